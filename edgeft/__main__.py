"""`python -m edgeft` (and `torchrun -m edgeft tune ...`) runs the CLI."""

from edgeft.cli import main

if __name__ == "__main__":
    main()
