"""``python -m minilean``: the command line (see ``minilean/cli.py``)."""
from minilean.cli import main

if __name__ == "__main__":
    main()
