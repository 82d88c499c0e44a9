from zoomsr.cli.main import run

run()
