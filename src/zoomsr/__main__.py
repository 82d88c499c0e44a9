from zoomsr.cli.entry import run

run()
