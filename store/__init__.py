"""The lab store: the models and migrations of LTB's PostgreSQL database and the rules of
labs, jobs and tasks. The jobs, the scheduler and the web portal import it; it imports
neither of them, so a worker never loads the web application."""
