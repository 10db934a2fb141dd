"""The study's database: SQLAlchemy Core tables, engine set-up, schema
version.

SQLite (the default) runs in WAL mode with a busy timeout, and every
transaction starts with BEGIN IMMEDIATE so that concurrent writers from
several server processes queue instead of failing.  Any other SQLAlchemy URL
(e.g. postgresql+psycopg://...) works unchanged.

`create_schema` creates missing tables and records SCHEMA_VERSION in
schema_version; a database of a newer version is refused, an older one is
upgraded by the steps in MIGRATIONS.

Version 2 gives the server its own evidence of listening: when each trial was
first shown (trials.shown_at), when each of its clips was first served to its
participant (left_served_at, right_served_at), how long its two clips play
(audio_ms), and a response time the server measures itself (ratings.
response_ms, from shown_at to the rating); what the page reports is kept
apart as ratings.client_response_ms, untrusted.
"""
import datetime

import sqlalchemy as sa

SCHEMA_VERSION = 2

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False))

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("external_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
    sa.Column("completion_code", sa.String(32)),
    sa.Column("attention_passed", sa.Boolean),
    sa.Column("comment", sa.Text))

trials = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"),
              nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("left_stimulus", sa.String(32), nullable=False),
    sa.Column("right_stimulus", sa.String(32), nullable=False),
    sa.Column("left_model", sa.String(64), nullable=False),
    sa.Column("right_model", sa.String(64), nullable=False),
    sa.Column("expected_value", sa.Integer),
    sa.Column("played_left", sa.Boolean, nullable=False, default=False),
    sa.Column("played_right", sa.Boolean, nullable=False, default=False),
    # The server's own record (schema version 2): first shown, each clip
    # first served to this participant for this trial, both clips' length.
    sa.Column("shown_at", sa.DateTime),
    sa.Column("left_served_at", sa.DateTime),
    sa.Column("right_served_at", sa.DateTime),
    sa.Column("audio_ms", sa.Integer),
    sa.UniqueConstraint("participant_id", "position"))

ratings = sa.Table(
    "ratings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"),
              nullable=False, unique=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"),
              nullable=False, index=True),
    sa.Column("value", sa.Integer, nullable=False),
    # Measured by the server: shown_at to the rating (NULL before version 2).
    sa.Column("response_ms", sa.Integer),
    # What the page said; never used by the analysis.
    sa.Column("client_response_ms", sa.Integer),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("value >= 1 AND value <= 7", name="value_in_scale"))


class SchemaError(RuntimeError):
  pass


def now() -> datetime.datetime:
  return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _add_column(conn: sa.engine.Connection, table: str, name: str,
                type_: sa.types.TypeEngine) -> None:
  """ALTER TABLE ... ADD COLUMN (nullable), in the dialect's own type."""
  conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} "
                       f"{type_.compile(dialect=conn.dialect)}")


def _migrate_1_to_2(conn: sa.engine.Connection) -> None:
  """Adds the server's listening record.  Version 1 stored the page's
  response time as response_ms: it moves to client_response_ms, and
  response_ms stays NULL, so the analysis treats those sessions as
  unverified (excluded unless asked to include them)."""
  for name in ("shown_at", "left_served_at", "right_served_at"):
    _add_column(conn, "trials", name, sa.DateTime())
  _add_column(conn, "trials", "audio_ms", sa.Integer())
  _add_column(conn, "ratings", "client_response_ms", sa.Integer())
  conn.exec_driver_sql("UPDATE ratings SET client_response_ms = response_ms, "
                       "response_ms = NULL")


# {from_version: callable(connection)} upgrading to from_version + 1.
MIGRATIONS = {1: _migrate_1_to_2}


def make_engine(url: str) -> sa.engine.Engine:
  """Engine for `url`; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
  if url.startswith("sqlite"):
    engine = sa.create_engine(url, connect_args={"timeout": 60,
                                                 "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _):
      dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
      cursor = dbapi_connection.cursor()
      cursor.execute("PRAGMA journal_mode=WAL")
      cursor.execute("PRAGMA synchronous=NORMAL")
      cursor.execute("PRAGMA foreign_keys=ON")
      cursor.execute("PRAGMA busy_timeout=60000")
      cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):
      connection.exec_driver_sql("BEGIN IMMEDIATE")
    return engine
  return sa.create_engine(url, pool_pre_ping=True)


def create_schema(engine: sa.engine.Engine) -> int:
  """Creates or upgrades the schema; returns the version now in force."""
  metadata.create_all(engine)
  with engine.begin() as conn:
    row = conn.execute(sa.select(schema_version.c.version)).first()
    if row is None:
      conn.execute(schema_version.insert().values(
          id=1, version=SCHEMA_VERSION, updated_at=now()))
      return SCHEMA_VERSION
    version = row.version
    if version > SCHEMA_VERSION:
      raise SchemaError(f"database schema version {version} is newer than "
                        f"this code's {SCHEMA_VERSION}")
    while version < SCHEMA_VERSION:
      if version not in MIGRATIONS:
        raise SchemaError(f"database schema version {version} cannot be "
                          f"upgraded to {SCHEMA_VERSION}: no migration")
      MIGRATIONS[version](conn)
      version += 1
    conn.execute(schema_version.update().values(version=version,
                                                updated_at=now()))
    return version
