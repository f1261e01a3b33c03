"""The rule engine of a bus (DESIGN.md §6).

    lang/     the rule language, pure: patterns, conditions, JSONPaths, templates,
              the costs they are held to, and the index that finds candidate rules
    rulebook  the rules of a bus: stored, compiled, indexed
    engine    committed events in, firings out (claim, run with retries, finish)
    actions   what a firing does: invoke a tool, or emit an event
    tools/    the tool invokers, by route kind (http, jsonrpc, command, python, mcp)
    explain   test_rule: would a rule match an event, and why not

Arrows point one way: lang imports nothing above it; the engine uses lang,
the rule book, actions and tools; none of them imports the bus.
"""
