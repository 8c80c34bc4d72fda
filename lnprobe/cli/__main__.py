"""`python -m lnprobe.cli ...` runs the command line (as the `lnprobe` console script does)."""

from lnprobe.cli import run

if __name__ == "__main__":
    run()
