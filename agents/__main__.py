"""`python -m agents`: run a node agent with settings from the environment (see `soak agent --help`)."""

from soak.cli import app

if __name__ == "__main__":
    app(["agent"])
