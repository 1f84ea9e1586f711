"""LTB's job layer: lab tasks as rq jobs run through ansible-runner, with the running-lab
store in PostgreSQL (store.models) and reservations started and ended by rq-scheduler.

    jobs.queue         submit(lab, task) and cancel(job_id): what the portal and the CLI call
    jobs.tasks         the rq job functions: deploy, remove, mirror, snapshot, restore (by lab name)
    jobs.runner        private data directory, ansible_runner.run, events -> progress
    jobs.health        labs whose job's worker is gone become failed
    jobs.reservations  a reservation deploys its lab at start and removes it at end
    jobs.worker        `python -m jobs worker`: an rq worker with LTB's settings
    jobs.scheduler     `python -m jobs scheduler`: rq-scheduler, reconciled with PostgreSQL
"""
