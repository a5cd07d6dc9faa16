"""`python -m rendergate`: the commands of rendergate.commands."""
import sys

from rendergate.commands import main

if __name__ == "__main__":
    sys.exit(main())
