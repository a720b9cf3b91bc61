"""``python -m minilean``: the command line (see ``minilean/cli.py``)."""

if __name__ == "__main__":
    try:  # Ctrl-C while the imports run, before the command's own handling starts
        from minilean.cli import main
        main()
    except KeyboardInterrupt:
        from minilean.errors import exit_interrupted
        exit_interrupted("minilean")
