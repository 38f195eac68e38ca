"""What the tests share: tiny runs of the entry points (``cli``, ``faults``), generated datasets (``coco``, ``dlc``,
``mpii``, ``media``), head fixtures (``heads``) and test-only classes that subprocess configs name
(``fault_heads``, ``collectives``: ``tests/`` is on the subprocesses' path). Imported as ``testkit.*``: pytest puts
``tests/`` on ``sys.path``."""
