"""Driving the real tools that touch charts and clusters: helm, sops, kubectl.

- :mod:`.validate` runs every check of a stage (:mod:`.checks`) before any action;
- :mod:`.helm` lints and renders, :mod:`.sops` decrypts, :mod:`.tools` finds and runs tools;
- :mod:`.releaseplan` builds a deploy's plan, :mod:`.release` runs it, :mod:`.diff`
  compares it with the live release, :mod:`.promotion` guards ``requires:``;
- :mod:`.plan` maps changed files to the releases to redeploy;
- :mod:`.health` checks a running hub end to end over :mod:`.hubapi`;
- :mod:`.cluster` checks that a stage's cluster answers.
"""
