r"""Load test of the listening study on localhost (bounded).

  python benchmarks/bench_listening_study.py [--participants=100] \
      [--workers=2 --threads=8] [--run_dir=runs/paper] \
      [--db_url=postgresql://user@127.0.0.1/bench] [--playback_speed=100]

Starts the real server (`python -m listening_study.serve`: gunicorn; SQLite in
WAL mode in a temporary folder, or the database of --db_url) on a free port,
then N simulated participants take the whole study at once (one thread each,
all released together: consent, and for every trial its page, both clips'
audio, the wait the listening rule asks for, the two "played" reports and
the rating; then the completion page).  The participants play the clips
--playback_speed times faster than real time and the server is started with
that --max_playback_speed, so the load is the real requests, audio included,
at a pace the rule accepts.  Afterwards the database is checked: every
rating the clients were told was stored is there exactly once, nothing else
is (only this run's participants are counted, so --db_url may hold earlier
runs).  Prints a table; exits non-zero if anything was lost or duplicated.
Without --run_dir the stimuli are rendered from random melodies (4 models x 4
clips) into a temporary folder.  The figures also go to
<--results_dir>/listening_study.json (results_io.py; docs/speed.md's table),
or listening_study_<backend>.json for another database than SQLite (e.g.
listening_study_postgresql.json), written before the exit status is decided.
"""
import argparse
import os
import secrets
import sys
import tempfile
import threading
import time

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import listening_study  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  pylint: disable=wrong-import-position
from listening_study import db  # pylint: disable=wrong-import-position
from listening_study import simulate  # pylint: disable=wrong-import-position
from listening_study import stimuli  # pylint: disable=wrong-import-position


def random_melodies(models, n=4, steps=32, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for m in models:
    tokens = rng.integers(14, 30, size=(n, steps))
    tokens[:, 1::2] = 1  # hold every other step
    out[m] = tokens
  return out


def backend_of(db_url):
  """"sqlite", "postgresql", ... for a SQLAlchemy URL."""
  return sa.engine.make_url(db_url).get_backend_name()


def result_name(db_url):
  """listening_study on SQLite (the default, as always), else
  listening_study_<backend>, so each database keeps its own figures."""
  backend = backend_of(db_url)
  return "listening_study" if backend == "sqlite" else (
      f"listening_study_{backend}")


def result_rows(m, latencies):
  """The load test's figures as results_io rows. ``m``: participants,
  completed, expected and stored ratings, wall seconds, requests, audio
  bytes, playback speed, database, lost, duplicated, unexpected, failed
  (client errors + unfinished participants); ``latencies``: seconds of
  every rating POST."""
  out = [
      results_io.row("participants completed", m["completed"],
                     "participants",
                     target=f"= {m['participants']} (all, at once)",
                     note=f"{m['database']}, clips played "
                          f"{m['speed']:g}x real time"),
      results_io.row("wall time", m["wall"], "s"),
      results_io.row("audio served", m["audio_bytes"] / 1e6, "MB"),
      results_io.row("rating throughput", m["stored"] / m["wall"],
                     "ratings/s"),
      results_io.row("HTTP requests (all pages and API)",
                     m["requests"] / m["wall"], "requests/s"),
  ]
  if latencies.size:
    for p in (50, 99):
      out.append(results_io.row(f"rating POST latency p{p}",
                                float(np.percentile(latencies, p)) * 1e3,
                                "ms"))
  out.append(results_io.row("ratings stored", m["stored"], "ratings",
                            target=f"= {m['expected']}"))
  for key, what, unit in (
      ("lost", "ratings lost", "ratings"),
      ("duplicated", "ratings duplicated", "ratings"),
      ("unexpected", "ratings stored but not acknowledged", "ratings"),
      ("failed", "client errors + unfinished participants", "participants")):
    out.append(results_io.row(what, m[key], unit, target="= 0"))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--participants", type=int, default=100)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--threads", type=int, default=8)
  parser.add_argument("--run_dir", default=None)
  parser.add_argument("--db_url", default=None,
                      help="SQLAlchemy URL of the study's database (default: "
                      "SQLite in a temporary folder)")
  parser.add_argument("--playback_speed", type=float, default=100.0,
                      help="how much faster than real time the participants "
                      "play the clips (the server's --max_playback_speed)")
  parser.add_argument("--time_limit", type=float, default=300.0,
                      help="seconds; participants still running then fail")
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()
  if args.participants < 1:
    sys.exit("--participants must be >= 1")
  if not args.playback_speed > 0:
    sys.exit("--playback_speed must be > 0")
  tag = f"load-{secrets.token_hex(3)}-"  # this run's participants

  with tempfile.TemporaryDirectory() as tmp:
    study = os.path.join(tmp, "study")
    out = listening_study.stimuli_dir(study)
    if args.run_dir:
      stimuli.prepare(args.run_dir, out, per_model=4)
    else:
      stimuli.prepare(None, out, per_model=4,
                      melodies=random_melodies(["note_rnn", "q", "psi", "g"]))
    manifest = stimuli.load_manifest(out)
    db_url = args.db_url or listening_study.default_db_url(study)
    token = "bench-admin-token-0123456789"
    with simulate.ServerProcess(study, token, [
        f"--workers={args.workers}", f"--threads={args.threads}",
        f"--db_url={db_url}",
        f"--max_playback_speed={args.playback_speed}"]) as server:
      barrier = threading.Barrier(args.participants)
      clients, errors = [], []

      def one(k):
        client = simulate.HttpParticipant(server.url, simulate.Taste(
            manifest, {"q": 1.0, "psi": 1.0, "g": 0.5}, seed=k), timeout=120,
                                          playback_speed=args.playback_speed)
        clients.append(client)
        barrier.wait()
        try:
          client.run(external_id=f"{tag}{k}")
        except Exception as e:  # pylint: disable=broad-except
          errors.append(f"participant {k}: {e}")

      threads = [threading.Thread(target=one, args=(k,), daemon=True)
                 for k in range(args.participants)]
      start = time.perf_counter()
      for t in threads:
        t.start()
      deadline = time.time() + args.time_limit
      for t in threads:
        t.join(max(0.0, deadline - time.time()))
      wall = time.perf_counter() - start
      unfinished = sum(t.is_alive() for t in threads)

    engine = db.make_engine(db_url)
    ours = db.participants.c.external_id.like(tag + "%")
    with engine.begin() as conn:
      stored = conn.execute(
          sa.select(db.ratings.c.trial_id, db.ratings.c.value).join(
              db.participants,
              db.participants.c.id == db.ratings.c.participant_id)
          .where(ours)).all()
      completed = conn.execute(sa.select(sa.func.count()).select_from(
          db.participants).where(
              ours, db.participants.c.completed_at.is_not(None))).scalar_one()
    engine.dispose()
    acknowledged = {(t, v) for c in clients for t, v in c.ratings}
    stored_set = set(map(tuple, stored))
    lost = len(acknowledged - stored_set)
    duplicated = len(stored) - len({t for t, _ in stored})
    unexpected = len(stored_set - acknowledged)
    latencies = np.array([x for c in clients for x in c.latencies])

  trials = len(manifest["models"]) * (len(manifest["models"]) - 1) // 2 + 1
  database = ("SQLite WAL" if backend_of(db_url) == "sqlite"
              else backend_of(db_url))
  audio_bytes = sum(c.audio_bytes for c in clients)
  rows = [
      ("participants (at once)", f"{args.participants}"),
      ("server", f"gunicorn gthread, {args.workers} workers x "
                 f"{args.threads} threads, {database}"),
      ("trials per participant", f"{trials}"),
      ("clips played at", f"{args.playback_speed:g}x real time"),
      ("audio served", f"{audio_bytes / 1e6:.1f} MB"),
      ("participants completed", f"{completed}"),
      ("ratings acknowledged", f"{len(acknowledged)}"),
      ("ratings stored", f"{len(stored)}"),
      ("wall time", f"{wall:.2f} s"),
      ("ratings/s", f"{len(stored) / wall:.1f}"),
      ("HTTP requests/s (all pages and API)",
       f"{sum(c.requests for c in clients) / wall:.1f}"),
      ("rating POST latency p50", f"{np.percentile(latencies, 50) * 1e3:.1f} ms"
       if latencies.size else "-"),
      ("rating POST latency p99", f"{np.percentile(latencies, 99) * 1e3:.1f} ms"
       if latencies.size else "-"),
      ("lost", f"{lost}"),
      ("duplicated", f"{duplicated}"),
      ("stored but not acknowledged", f"{unexpected}"),
      ("client errors / unfinished", f"{len(errors)} / {unfinished}"),
  ]
  width = max(len(r[0]) for r in rows)
  print(f"| {'what':<{width}} | measured |")
  print(f"|{'-' * (width + 2)}|----------|")
  for name, value in rows:
    print(f"| {name:<{width}} | {value} |")
  for e in errors[:5]:
    print("error:", e)
  expected = args.participants * trials
  measured = dict(participants=args.participants, completed=completed,
                  expected=expected, stored=len(stored), wall=wall,
                  requests=sum(c.requests for c in clients), lost=lost,
                  duplicated=duplicated, unexpected=unexpected,
                  failed=len(errors) + unfinished, audio_bytes=audio_bytes,
                  speed=args.playback_speed, database=database)
  results_io.write(result_name(db_url), result_rows(measured, latencies),
                   sys.argv, args.results_dir, load_at_start)
  if lost or duplicated or unexpected or errors or unfinished or (
      len(stored) != expected):
    sys.exit(f"FAILED: expected {expected} ratings stored exactly once")


if __name__ == "__main__":
  console.install()
  main()
