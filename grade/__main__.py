from grade.cli import entry

entry()
