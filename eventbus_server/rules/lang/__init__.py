"""The rule language, pure and synchronous: what a rule matches and what it renders.

`matcher.compile_rule` turns a stored rule into a `CompiledRule` from its
parts: `pattern` (EventBridge patterns), `conditions` (match_fields),
`operators` (every test linear in its input), `paths` (the JSONPaths that
are allowed), `templates` (`{{ $.payload.x }}` in actions), and `limits`
(what one rule and one event may cost). `index` and `plan` find the rules
that may match an event's topic without trying them all. No I/O here.
"""
