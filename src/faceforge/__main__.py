"""`python -m faceforge …` is the `faceforge` command."""
from faceforge.cli.main import app

if __name__ == "__main__":
    app(prog_name="faceforge")
