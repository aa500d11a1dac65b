"""``python -m model_diff``: the form git drivers are registered with (works from GUIs/venvs)."""

from model_diff.cli import main

if __name__ == "__main__":
    main()
