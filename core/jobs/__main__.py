"""``python -m core.jobs FOLDER --lock-fd N``: one job's supervisor (started by ``JobRunner.submit``)."""

from core.jobs.supervisor import main

main()
