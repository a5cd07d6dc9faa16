"""Image mutation testing: how much of what can break in a real image the suites catch, and
whether their one line names it.

From a good image, rendergate derives single-defect mutants from what its checks actually use,
not from a hand-picked list. The suites are run once on the good image while the kernel records
every file opened or executed in the image's layers (inotify on the layers' folders: overlayfs
reports a file opened through a container's root on the layer that holds it, so shared
libraries ldd would list, modules dlopen'ed by Xorg, Mesa or ffmpeg, TeX's inputs, Python's
modules and data files are all seen). Each mutant is one of those files (or its folder) deleted,
truncated, replaced by a program that exits 1, or made non-executable: a real image, one layer
FROM the good one, validated by the whole variant suite, which is not told what was changed.

A mutant is *detected* when a check that did not fail on the good image fails on it, and
*root-caused* when a line of those failures names the mutated file, its package or its component
and none names another cause. Mutants nobody detects are listed for triage (an optional file, or
a gap). Producing the results is this module; the page is rendergate/pages.py's.
"""
