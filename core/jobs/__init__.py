"""Background training jobs: records, request checking, processes, the runner and each job's supervisor."""
