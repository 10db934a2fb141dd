"""The study's web app (Flask): participant flow, audio, admin.

Participant:  GET /  instructions + consent  -> POST /start
              GET /study  the current trial (or -> /done); the first time
                  a trial is served, the server records shown_at
              GET /audio/<id>.wav?trial=<trial id>  a stimulus (only ids in
                  the manifest; rendered on the first request in a study
                  rendered on demand); served to a participant as a clip of
                  their current trial, it records that side's served_at
              POST /api/trials/<id>/played  {"side": "left"|"right"}
              POST /api/trials/<id>/rating  {"value": 1..7,
                  "response_ms": n (the page's own, kept but untrusted)}
              GET /done  completion code;  POST /api/comment {"text": ...}
              GET /resume/<token>  continue in another browser
Admin (token as "Authorization: Bearer T" or ?token=T):
              GET /admin/results, GET /admin/export.csv
A rating is taken only after the server served both clips of the trial and
no sooner after it showed the trial than both clips take to play at
max_playback_speed (design.py's listening rule); its response_ms is the
server's own measure.  Every refusal under /api/ is a 4xx with JSON
{"error": ...} and changes nothing (unknown routes, wrong methods and ids out
of range included).  The participant's secret token lives in a cookie (and in
the resume link); all state is in the database, so a restarted browser or
server resumes.
"""
import csv
import datetime
import hmac
import io
import os
import re
import secrets
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    TextIO)

import sqlalchemy as sa
from flask import (Flask, abort, jsonify, make_response, redirect,
                   render_template, request, send_from_directory, url_for)
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, ValidationError

import listening_study
from listening_study import db
from listening_study import design
from listening_study import stimuli as stimuli_lib

COOKIE = "ls_participant"
COOKIE_MAX_AGE = 60 * 60 * 24 * 30
STIMULUS_RE = re.compile(r"^[0-9a-f]{16}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_EXTERNAL_ID = 64
MAX_COMMENT = 2000
# Ids are INTEGER columns: 32-bit on PostgreSQL.  A larger id in a URL is no
# resource (404) rather than an error of the database driver.
MAX_ID = 2**31 - 1
API_MESSAGES = {400: "bad request", 404: "no such API resource",
                405: "method not allowed", 413: "request too large"}
SIDES = ("left", "right")


class ApiError(Exception):

  def __init__(self, status, message):
    super().__init__(message)
    self.status = status
    self.message = message


class IdConverter(BaseConverter):
  """A database id in a URL: 1 to 10 digits and at most MAX_ID; anything
  else matches no route (404) instead of reaching the database."""
  regex = r"\d{1,10}"

  def to_python(self, value: str) -> int:
    number = int(value)
    if not 0 < number <= MAX_ID:
      raise ValidationError()
    return number

  def to_url(self, value: Any) -> str:
    return str(int(value))


def is_api_path(path: str) -> bool:
  return path == "/api" or path.startswith("/api/")


def milliseconds(delta: datetime.timedelta) -> int:
  return int(delta.total_seconds() * 1000)


def create_app(study_dir: str, db_url: Optional[str] = None,
               admin_token: Optional[str] = None, trials: Optional[int] = None,
               engine: Optional[sa.engine.Engine] = None,
               max_playback_speed: float = design.MAX_PLAYBACK_SPEED,
               clock: Callable[[], datetime.datetime] = db.now) -> Flask:
  """The Flask app for the study in `study_dir` (stimuli must exist).

  trials: pairs per participant (+1 attention check); default
  design.default_trials: every model pair once in the paper's design.
  max_playback_speed: the listening rule's speed (design.py): 1 for real
  listeners; simulations that play clips faster say how much faster.
  clock: the server's time (naive UTC), replaceable by tests.
  """
  max_playback_speed = design.check_playback_speed(max_playback_speed)
  manifest = stimuli_lib.load_manifest(listening_study.stimuli_dir(study_dir))
  stimuli_dir = listening_study.stimuli_dir(study_dir)
  audio_dir = os.path.join(stimuli_dir, "audio")
  stimulus_ids = frozenset(manifest["stimuli"])
  num_trials = trials or design.default_trials(manifest)
  if num_trials < 1:
    raise ValueError(f"trials must be >= 1, got {num_trials}")
  if not admin_token or len(admin_token) < 16:
    raise ValueError("admin token must have at least 16 characters")
  if engine is None:
    engine = db.make_engine(db_url or listening_study.default_db_url(study_dir))
    db.create_schema(engine)

  clip_seconds = max(s.get("seconds", 0) for s in manifest["stimuli"].values())
  page_info = dict(scale=design.SCALE, trials=num_trials + 1,
                   clip_seconds=int(round(clip_seconds)),
                   minutes=max(1, int(round((num_trials + 1) *
                                            (2 * clip_seconds + 10) / 60))))

  app = Flask(__name__)
  app.config.update(MAX_CONTENT_LENGTH=16 * 1024)
  app.url_map.converters["id"] = IdConverter
  app.extensions["study"] = dict(engine=engine, manifest=manifest,
                                 trials=num_trials,
                                 max_playback_speed=max_playback_speed)
  T, P, R = db.trials, db.participants, db.ratings

  # ---- helpers -------------------------------------------------------------
  def participant_token():
    token = request.cookies.get(COOKIE, "")
    return token if TOKEN_RE.match(token) else None

  def load_participant(conn, token):
    if token is None:
      return None
    return conn.execute(sa.select(P).where(P.c.token == token)).first()

  def current_trial(conn, participant_id):
    rated = sa.select(R.c.trial_id).where(R.c.participant_id == participant_id)
    return conn.execute(
        sa.select(T).where(T.c.participant_id == participant_id,
                           T.c.id.not_in(rated))
        .order_by(T.c.position).limit(1)).first()

  def set_cookie(response, token):
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True,
                        samesite="Lax", secure=request.is_secure)
    return response

  def json_body():
    if not request.is_json:
      raise ApiError(415, "send JSON (Content-Type: application/json)")
    try:
      body = request.get_json(silent=True)
    except RecursionError:  # nested too deep for the parser: not an object
      body = None
    if not isinstance(body, dict):
      raise ApiError(400, "body must be a JSON object")
    return body

  def trial_for_participant(conn, trial_id):
    participant = load_participant(conn, participant_token())
    if participant is None:
      raise ApiError(401, "no participant session: start the study first")
    trial = conn.execute(sa.select(T).where(T.c.id == trial_id)).first()
    if trial is None or trial.participant_id != participant.id:
      raise ApiError(403, "this trial is not assigned to you")
    return participant, trial

  def trial_audio_ms(trial):
    if trial.audio_ms is not None:
      return trial.audio_ms
    if {trial.left_stimulus, trial.right_stimulus} <= stimulus_ids:
      return design.clips_ms(manifest, trial.left_stimulus,
                             trial.right_stimulus)
    return None

  def mark_shown(conn, trial):
    """Records the first time the server shows `trial` (and, for a trial
    made before schema version 2, its clips' length)."""
    conn.execute(T.update().where(T.c.id == trial.id, T.c.shown_at.is_(None))
                 .values(shown_at=clock(), audio_ms=trial_audio_ms(trial)))

  def record_served(stimulus_id):
    """Records that `stimulus_id` was served to the participant of this
    request as a clip of their current, shown trial (first time only)."""
    token = participant_token()
    if token is None:
      return
    with engine.begin() as conn:
      participant = load_participant(conn, token)
      if participant is None:
        return
      trial = current_trial(conn, participant.id)
      if trial is None or trial.shown_at is None:
        return
      for side in SIDES:
        column = T.c[f"{side}_served_at"]
        if (getattr(trial, f"{side}_stimulus") == stimulus_id and
            getattr(trial, column.name) is None):
          conn.execute(T.update().where(T.c.id == trial.id, column.is_(None))
                       .values({column.name: clock()}))

  def check_listened(trial, now):
    """Refuses (409) a rating of `trial` at `now` that the server's record
    does not allow: not shown, a clip never served, or sooner than both
    clips play at max_playback_speed.  -> the server's response time, ms."""
    if trial.shown_at is None:
      raise ApiError(409, "this pair has not been shown yet: open /study")
    if trial.left_served_at is None or trial.right_served_at is None:
      raise ApiError(409, "play both melodies to the end before rating "
                          "(a melody was never loaded)")
    if not (trial.played_left and trial.played_right):
      raise ApiError(409, "play both melodies to the end before rating")
    audio = trial_audio_ms(trial)
    if audio is None:
      raise ApiError(409, "this pair's melodies are not in the study any more")
    elapsed = milliseconds(now - trial.shown_at)
    needed = design.min_listen_ms(audio, max_playback_speed)
    if elapsed < needed:
      raise ApiError(409, f"too soon: the two melodies take {needed / 1000:.1f}"
                          " s to play; listen to both to the end, then rate")
    return elapsed

  def check_admin():
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.args.get(
        "token", "")
    if not given or not hmac.compare_digest(given.encode(),
                                            admin_token.encode()):
      abort(make_response(jsonify(error="admin token required"), 401))

  @app.errorhandler(ApiError)
  def _api_error(e):
    return jsonify(error=e.message), e.status

  @app.errorhandler(HTTPException)
  def _http_error(e):
    """JSON for every error under /api/ (and for 413 anywhere); the
    participant pages keep Flask's pages."""
    if not (is_api_path(request.path) or e.code == 413):
      return e
    response = jsonify(error=API_MESSAGES.get(e.code, e.name.lower()))
    response.status_code = e.code
    for key, value in e.get_headers():
      if key.lower() == "allow":
        response.headers[key] = value
    return response

  @app.after_request
  def _headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; media-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'")
    if request.path.startswith(("/study", "/done", "/api/", "/admin/")):
      response.headers["Cache-Control"] = "no-store"
    return response

  # ---- participant pages ---------------------------------------------------
  @app.get("/")
  def index():
    with engine.begin() as conn:
      participant = load_participant(conn, participant_token())
    if participant is not None:
      return redirect(url_for("study"))
    external = request.args.get("PROLIFIC_PID") or request.args.get(
        "workerId") or ""
    return render_template("index.html", **page_info,
                           external_id=external[:MAX_EXTERNAL_ID])

  @app.post("/start")
  def start():
    if request.form.get("consent") != "yes":
      return render_template("index.html", **page_info,
                             external_id=request.form.get("external_id", "")[
                                 :MAX_EXTERNAL_ID],
                             error="Please tick the consent box to take "
                                   "part."), 400
    external = request.form.get("external_id", "").strip()
    if len(external) > MAX_EXTERNAL_ID:
      return jsonify(error=f"participant id longer than {MAX_EXTERNAL_ID} "
                           "characters"), 400
    with engine.begin() as conn:
      existing = load_participant(conn, participant_token())
      if existing is not None:
        return redirect(url_for("study"))
      token = secrets.token_hex(16)
      seq = conn.execute(P.insert().values(
          token=token, external_id=external or None,
          created_at=db.now())).inserted_primary_key[0]
      rows = design.build_trials(seq, manifest, num_trials)
      conn.execute(T.insert(), [dict(participant_id=seq, position=i,
                                     played_left=False, played_right=False,
                                     **row) for i, row in enumerate(rows)])
    return set_cookie(redirect(url_for("study"), 303), token)

  @app.get("/resume/<token>")
  def resume(token):
    if not TOKEN_RE.match(token):
      abort(404)
    with engine.begin() as conn:
      if load_participant(conn, token) is None:
        abort(404)
    return set_cookie(redirect(url_for("study")), token)

  @app.get("/study")
  def study():
    with engine.begin() as conn:
      participant = load_participant(conn, participant_token())
      if participant is None:
        return redirect(url_for("index"))
      trial = current_trial(conn, participant.id)
      if trial is not None and trial.shown_at is None:
        mark_shown(conn, trial)
      total = conn.execute(sa.select(sa.func.count()).select_from(T).where(
          T.c.participant_id == participant.id)).scalar_one()
    if trial is None:
      return redirect(url_for("done"))
    return render_template(
        "trial.html", trial=trial, number=trial.position + 1, total=total,
        scale=design.SCALE, participant=participant,
        attention_label=(design.LABELS[trial.expected_value]
                         if trial.kind == "attention" else None))

  @app.get("/done")
  def done():
    with engine.begin() as conn:
      participant = load_participant(conn, participant_token())
      if participant is None:
        return redirect(url_for("index"))
      if participant.completion_code is None:
        return redirect(url_for("study"))
    return render_template("done.html", participant=participant)

  # ---- participant API -----------------------------------------------------
  @app.post("/api/trials/<id:trial_id>/played")
  def played(trial_id):
    body = json_body()
    side = body.get("side")
    if side not in SIDES:
      raise ApiError(422, "side must be 'left' or 'right'")
    with engine.begin() as conn:
      _, trial = trial_for_participant(conn, trial_id)
      if getattr(trial, f"{side}_served_at") is None:
        raise ApiError(409, f"the {side} melody was never loaded for this "
                            "pair")
      column = T.c.played_left if side == "left" else T.c.played_right
      conn.execute(T.update().where(T.c.id == trial.id).values(
          {column.name: True}))
    return jsonify(ok=True)

  @app.post("/api/trials/<id:trial_id>/rating")
  def rate(trial_id):
    body = json_body()
    value = body.get("value")
    if type(value) is not int or not (  # pylint: disable=unidiomatic-typecheck
        design.SCALE_MIN <= value <= design.SCALE_MAX):
      raise ApiError(422, f"value must be an integer from {design.SCALE_MIN} "
                          f"to {design.SCALE_MAX}")
    response_ms = body.get("response_ms")
    if response_ms is not None and (type(response_ms) is not int  # pylint: disable=unidiomatic-typecheck
                                    or not 0 <= response_ms < 10**9):
      raise ApiError(422, "response_ms must be a non-negative integer")
    with engine.begin() as conn:
      participant, trial = trial_for_participant(conn, trial_id)
      if conn.execute(sa.select(R.c.id).where(
          R.c.trial_id == trial.id)).first() is not None:
        raise ApiError(409, "this pair has already been rated")
      current = current_trial(conn, participant.id)
      if current is None or current.id != trial.id:
        raise ApiError(409, "rate the pairs in order")
      now = clock()
      elapsed = check_listened(trial, now)
      try:
        conn.execute(R.insert().values(
            trial_id=trial.id, participant_id=participant.id, value=value,
            response_ms=elapsed, client_response_ms=response_ms,
            created_at=now))
      except sa.exc.IntegrityError as e:
        raise ApiError(409, "this pair has already been rated") from e
      finished = current_trial(conn, participant.id) is None
      if finished:
        checks = conn.execute(
            sa.select(T.c.expected_value, R.c.value).join(
                R, R.c.trial_id == T.c.id).where(
                    T.c.participant_id == participant.id,
                    T.c.kind == "attention")).all()
        conn.execute(P.update().where(P.c.id == participant.id).values(
            completed_at=clock(),
            completion_code=secrets.token_hex(4).upper() + "-" +
            secrets.token_hex(2).upper(),
            attention_passed=all(c.expected_value == c.value for c in checks)))
    return jsonify(ok=True, next=url_for("done") if finished
                   else url_for("study"))

  @app.post("/api/comment")
  def comment():
    body = json_body()
    text = body.get("text")
    if not isinstance(text, str) or len(text) > MAX_COMMENT:
      raise ApiError(422, f"text must be a string of at most {MAX_COMMENT} "
                          "characters")
    with engine.begin() as conn:
      participant = load_participant(conn, participant_token())
      if participant is None:
        raise ApiError(401, "no participant session")
      if participant.completion_code is None:
        raise ApiError(409, "comments are taken after the last pair")
      conn.execute(P.update().where(P.c.id == participant.id).values(
          comment=text))
    return jsonify(ok=True)

  @app.get("/audio/<name>")
  def audio(name):
    stem, ext = os.path.splitext(name)
    if ext != ".wav" or not STIMULUS_RE.match(stem) or stem not in stimulus_ids:
      abort(404)
    if request.method == "GET":  # a HEAD serves no audio
      record_served(stem)
    stimuli_lib.render_stimulus(manifest, stimuli_dir, stem)  # if on demand
    # No ETag (it would carry the file's mtime); Last-Modified is the same
    # for every clip (prepare sets one mtime), Range requests still work.
    # Private: a shared cache must not answer for the server, whose record
    # of served clips the listening rule needs (?trial= keeps each trial's
    # URL its own, so a clip heard again in a later trial is fetched again).
    response = send_from_directory(audio_dir, name, mimetype="audio/wav",
                                   max_age=3600, etag=False)
    response.cache_control.public = False
    response.cache_control.private = True
    return response

  @app.get("/healthz")
  def healthz():
    with engine.begin() as conn:
      conn.execute(sa.select(1))
    return jsonify(ok=True)

  # ---- admin ---------------------------------------------------------------
  @app.get("/admin/results")
  def admin_results():
    check_admin()
    with engine.begin() as conn:
      people = conn.execute(sa.select(P).order_by(P.c.id)).all()
      pair_counts = conn.execute(
          sa.select(T.c.left_model, T.c.right_model, sa.func.count())
          .join(R, R.c.trial_id == T.c.id).where(T.c.kind == "pair")
          .group_by(T.c.left_model, T.c.right_model)).all()
      num_ratings = conn.execute(
          sa.select(sa.func.count()).select_from(R)).scalar_one()
    by_pair = {}
    for left, right, n in pair_counts:
      key = tuple(sorted((left, right)))
      by_pair[key] = by_pair.get(key, 0) + n
    pairs = design.model_pairs(manifest["models"])
    if manifest["design"] == "preferences":  # clips of one model paired too
      pairs += [(m, m) for m in manifest["models"]]
    pair_rows = [(a, b, by_pair.get(tuple(sorted((a, b))), 0))
                 for a, b in pairs]
    return render_template("admin.html", people=people, pair_rows=pair_rows,
                           num_ratings=num_ratings)

  @app.get("/admin/export.csv")
  def admin_export():
    check_admin()
    with engine.begin() as conn:
      rows = export_rows(conn)
    buffer = io.StringIO()
    write_csv(buffer, rows)
    response = make_response(buffer.getvalue())
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = "attachment; filename=ratings.csv"
    return response

  return app


EXPORT_COLUMNS = ("rating_id", "participant_id", "external_id", "trial_id",
                  "position", "kind", "left_model", "right_model",
                  "left_stimulus", "right_stimulus", "value", "expected_value",
                  "response_ms", "client_response_ms", "audio_ms", "shown_at",
                  "left_served_at", "right_served_at", "created_at",
                  "participant_completed", "attention_passed")


def study_rows(study: str, db_url: Optional[str] = None
               ) -> List[Dict[str, Any]]:
  """export_rows of the study's database (default: its SQLite file);
  FileNotFoundError when that file does not exist yet."""
  db_url = db_url or listening_study.default_db_url(study)
  if db_url.startswith("sqlite:///") and not os.path.isfile(db_url[10:]):
    raise FileNotFoundError(f"no study database at {db_url[10:]!r}; start "
                            "the study first")
  engine = db.make_engine(db_url)
  db.create_schema(engine)
  with engine.begin() as conn:
    rows = export_rows(conn)
  engine.dispose()
  return rows


def export_rows(conn: sa.engine.Connection) -> List[Dict[str, Any]]:
  """Every rating with its trial and participant (EXPORT_COLUMNS): the
  admin CSV and the analysis's input.  response_ms is the server's own;
  client_response_ms is what the page said."""
  T, P, R = db.trials, db.participants, db.ratings
  query = (sa.select(R.c.id.label("rating_id"), R.c.participant_id,
                     P.c.external_id, R.c.trial_id, T.c.position, T.c.kind,
                     T.c.left_model, T.c.right_model, T.c.left_stimulus,
                     T.c.right_stimulus, R.c.value, T.c.expected_value,
                     R.c.response_ms, R.c.client_response_ms, T.c.audio_ms,
                     T.c.shown_at, T.c.left_served_at, T.c.right_served_at,
                     R.c.created_at,
                     (P.c.completed_at.is_not(None)).label(
                         "participant_completed"),
                     P.c.attention_passed)
           .join(T, T.c.id == R.c.trial_id)
           .join(P, P.c.id == R.c.participant_id).order_by(R.c.id))
  return [dict(r._mapping) for r in conn.execute(query)]  # pylint: disable=protected-access


def _csv_safe(value):
  """Neutralises spreadsheet formulas in free text (CSV injection)."""
  if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
    return "'" + value
  return value


def write_csv(stream: TextIO, rows: Iterable[Mapping[str, Any]]) -> None:
  writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS)
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _csv_safe(row[k]) for k in EXPORT_COLUMNS})
