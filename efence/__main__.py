"""`python -m efence` is the `efence` command (handy from a source tree or another worktree)."""

from efence.cli import main

if __name__ == "__main__":
    main()
