"""JSON out of any Python 3 an image has: json's own, or, where the standard library is only in
part (Debian's python3-minimal has no json), written by hand. Imported by the probes beside it."""
try:
    from json import dumps
except ImportError:
    def dumps(value):
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        if isinstance(value, dict):
            return "{" + ", ".join(f"{dumps(str(k))}: {dumps(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(dumps, value)) + "]"
        if isinstance(value, str):
            return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value) + '"'
        return str(value)
