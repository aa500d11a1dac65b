"""``python -m model_diff``: the form git drivers are registered with (works from GUIs/venvs).

``textconv`` is dispatched before the click group is imported: git runs it once per file per
commit, so it must not pay for click or for what other commands import.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["textconv"] and not {"-h", "--help"} & set(sys.argv[2:]):
        from model_diff.gitdriver.textconv import main as textconv_main

        sys.exit(textconv_main(sys.argv[2:]))
    from model_diff.cli import main

    main()
