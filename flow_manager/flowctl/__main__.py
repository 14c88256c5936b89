"""python -m flow_manager.flowctl: the same as the flowctl console script."""

from flow_manager.flowctl.commands import main

main()
