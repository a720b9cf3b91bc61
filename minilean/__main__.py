"""``python -m minilean``: the command line (see ``minilean/cli.py``)."""
import sys

if __name__ == "__main__":
    try:  # Ctrl-C while the imports run, before the command's own handling starts
        from minilean.cli import main
        main()
    except KeyboardInterrupt:
        print("minilean: interrupted", file=sys.stderr)
        sys.exit(130)
