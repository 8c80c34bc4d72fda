"""`python -m lnprobe ...` runs the command line (as the `lnprobe` script and `python -m lnprobe.cli` do)."""

from lnprobe.cli import run

if __name__ == "__main__":
    run()
