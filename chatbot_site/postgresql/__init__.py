"""The database backend of ``DATABASES`` (``ENGINE``): Django's PostgreSQL backend whose
connections, pooled or not, are of one psycopg class (:mod:`chatbot_site.postgresql.base`)."""
