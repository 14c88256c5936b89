"""flowctl: the command line for people (Click for the verbs, Rich for tables and the live view).

`commands.py` the verbs, `output.py` how data is printed (-o table|wide|json|yaml), `top.py` the live
view's model (fed by the server's events) and its table. Everything goes through flow_manager.client.
"""
