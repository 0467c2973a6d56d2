import sys

from spacy_mat.cli import main

if __name__ == "__main__":
    sys.exit(main())
