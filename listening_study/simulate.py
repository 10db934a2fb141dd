r"""Simulated participants, for tests, the load benchmark and demonstrations.

A simulated listener has a planted taste (Taste): a quality per model
(--quality), or a utility of the melody itself (--utility=register: higher
melodies preferred; density: more notes; none: the control, no preference),
and rates a pair by rl_tuner_tf.preferences' rating model with logistic noise.
It answers attention checks as instructed (unless told to fail them).

Two ways to take the study:
  * HttpParticipant: plain HTTP (http.client), as the page and its browser
    would: it opens each pair, fetches both clips, waits as long as they take
    to play at `playback_speed`, reports them played and rates;
  * take_study_in_browser: a real headless Chromium (Debian's chromium +
    chromium-driver through Selenium), keyboard only: A / B play the clips
    (sped up BROWSER_PLAYBACK_SPEED = 16x, so that a trial takes a second),
    1-7 and Enter rate.

Both play faster than real time, so the server must be told how much faster
(serve --max_playback_speed, at least --playback_speed here), or it refuses
their ratings as too soon: that is the listening rule of design.py.

  python -m listening_study.serve --run_dir=runs/paper --max_playback_speed=16
  python -m listening_study.simulate --url=http://127.0.0.1:8000/ \
      --study_dir=runs/paper/listening_study --participants=12 --browser \
      --quality=note_rnn:0,q:1.5,psi:1.5,g:0.8
  python -m listening_study.simulate --url=... --study_dir=... \
      --participants=100 --threads=8 --utility=register --scale=0.5
"""
from __future__ import annotations

import html
import http.client
import io
import json
import random
import re
import time
import urllib.parse
import wave
from typing import (TYPE_CHECKING, Any, Dict, List, Mapping, Optional,
                    Sequence, Tuple)

import numpy as np

from data_pipeline import console
from listening_study import design
from rl_tuner_tf import preferences

if TYPE_CHECKING:
  from selenium import webdriver
  from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_TRIAL_RE = re.compile(r'data-trial="(\d+)"')
_AUDIO_RE = re.compile(r'/audio/([0-9a-f]{16})\.wav')
_AUDIO_SRC_RE = re.compile(r'src="(/audio/[0-9a-f]{16}\.wav[^"]*)"')
BROWSER_PLAYBACK_SPEED = 16  # Chromium's fastest playbackRate
_ATTENTION_RE = re.compile(r'please choose\s*<strong>(\d)')
_CODE_RE = re.compile(r'id="completion-code">([^<]+)<')


class Taste:
  """A simulated listener with a planted taste: a utility u per clip, read
  from the study's private manifest (a real participant never sees it),
  either a quality per model (`quality`) or a function of the melody's
  tokens (`utility`, e.g. rl_tuner_tf.preferences.register_utility), and
  the rating model of rl_tuner_tf.preferences.simulate_ratings with A the
  left clip:

      z = scale * (u(left) - u(right)) + e,   e ~ Logistic(0, noise)
      rating = 4 - sign(z) * #{t in (0.5, 1.5, 2.5) : |z| >= t}

  so preferences.best_possible_accuracy says how well any reward model can
  do on its ratings.  Attention checks are answered as instructed (unless
  fail_attention).
  """

  def __init__(self, manifest: Mapping[str, Any],
               quality: Optional[Mapping[str, float]] = None,
               noise: float = 1.0, scale: float = 1.0,
               seed: Optional[int] = None, fail_attention: bool = False,
               utility: Optional[preferences.Utility] = None):
    if (quality is None) == (utility is None):
      raise ValueError("give a taste: a quality per model or a utility of "
                       "the tokens (one of them)")
    clips = manifest["stimuli"]
    if utility is not None:
      ids = list(clips)
      values = utility(np.array([clips[i]["tokens"] for i in ids]))
      self.utility_of = dict(zip(ids, np.asarray(values, np.float64)))
    else:
      self.utility_of = {i: float(quality.get(c["model"], 0.0))
                         for i, c in clips.items()}
    if not scale >= 0 or not noise >= 0:
      raise ValueError(f"scale and noise must be >= 0, got {scale}, {noise}")
    self.noise, self.scale = noise, scale
    self.fail_attention = fail_attention
    self.rng = np.random.default_rng(seed)

  def choose(self, left_id: str, right_id: str,
             attention_value: Optional[int] = None) -> int:
    if attention_value is not None:
      if self.fail_attention:
        return design.SCALE_MAX + design.SCALE_MIN - attention_value
      return attention_value
    d = self.scale * (self.utility_of[left_id] - self.utility_of[right_id])
    return int(preferences.rate(d, self.noise, self.rng))


def parse_quality(text: str) -> Dict[str, float]:
  out = {}
  for item in text.split(","):
    name, _, value = item.partition(":")
    out[name.strip()] = float(value)
  return out


class HttpParticipant:
  """Takes the study over HTTP as a browser would (module docstring):
  `latencies` holds each rating POST's seconds, `audio_bytes` the audio it
  fetched."""

  def __init__(self, url: str, taste: Taste, timeout: float = 60,
               playback_speed: float = BROWSER_PLAYBACK_SPEED):
    parts = urllib.parse.urlsplit(url)
    self.host, self.port = parts.hostname, parts.port or 80
    self.timeout = timeout
    self.taste = taste
    self.playback_speed = playback_speed
    self.cookie = None
    self.latencies = []
    self.ratings = []
    self.requests = 0
    self.audio_bytes = 0

  def request(self, method: str, path: str, body: Optional[str] = None,
              headers: Optional[Mapping[str, str]] = None
              ) -> Tuple[int, Optional[str], str]:
    status, location, data = self.request_bytes(method, path, body, headers)
    return status, location, data.decode()

  def request_bytes(self, method: str, path: str, body: Optional[str] = None,
                    headers: Optional[Mapping[str, str]] = None
                    ) -> Tuple[int, Optional[str], bytes]:
    self.requests += 1
    conn = http.client.HTTPConnection(self.host, self.port,
                                      timeout=self.timeout)
    try:
      headers = dict(headers or {})
      if self.cookie:
        headers["Cookie"] = self.cookie
      conn.request(method, path, body=body, headers=headers)
      response = conn.getresponse()
      data = response.read()
      cookie = response.getheader("Set-Cookie")
      if cookie:
        self.cookie = cookie.split(";", 1)[0]
      return response.status, response.getheader("Location"), data
    finally:
      conn.close()

  def fetch_clip(self, path: str) -> float:
    """GETs a clip as the page's <audio> does; -> its length in seconds."""
    status, _, data = self.request_bytes("GET", path)
    if status != 200:
      raise RuntimeError(f"{path} answered {status}")
    self.audio_bytes += len(data)
    with wave.open(io.BytesIO(data)) as clip:
      return clip.getnframes() / clip.getframerate()

  def post_json(self, path: str, payload: Dict[str, Any]
                ) -> Tuple[int, Dict[str, Any]]:
    status, _, text = self.request("POST", path, json.dumps(payload),
                                   {"Content-Type": "application/json"})
    return status, (json.loads(text) if text else {})

  def run(self, external_id: str = "") -> str:
    status, _, _ = self.request(
        "POST", "/start",
        urllib.parse.urlencode({"consent": "yes", "external_id": external_id}),
        {"Content-Type": "application/x-www-form-urlencoded"})
    if status != 303:
      raise RuntimeError(f"/start answered {status}")
    while True:
      status, location, page = self.request("GET", "/study")
      if status == 302 and location and location.endswith("/done"):
        break
      if status != 200:
        raise RuntimeError(f"/study answered {status}")
      shown = time.monotonic()
      trial = int(_TRIAL_RE.search(page).group(1))
      left, right = _AUDIO_RE.findall(page)[:2]
      attention = _ATTENTION_RE.search(page)
      seconds = sum(self.fetch_clip(html.unescape(src))
                    for src in _AUDIO_SRC_RE.findall(page)[:2])
      # "Plays" both clips: waits their length at playback_speed (1% and
      # 5 ms more, for the rounding of the manifest's lengths).
      time.sleep(max(0.0, shown + 1.01 * seconds / self.playback_speed +
                     0.005 - time.monotonic()))
      for side in ("left", "right"):
        code, body = self.post_json(f"/api/trials/{trial}/played",
                                    {"side": side})
        if code != 200:
          raise RuntimeError(f"played answered {code}: {body}")
      value = self.taste.choose(left, right, int(attention.group(1))
                                if attention else None)
      start = time.perf_counter()
      code, body = self.post_json(
          f"/api/trials/{trial}/rating",
          {"value": value,
           "response_ms": int((time.monotonic() - shown) * 1000)})
      self.latencies.append(time.perf_counter() - start)
      if code != 200:
        raise RuntimeError(f"rating answered {code}: {body}")
      self.ratings.append((trial, value))
    _, _, page = self.request("GET", "/done")
    return _CODE_RE.search(page).group(1).strip()


def make_chromium_driver(user_data_dir: Optional[str] = None
                         ) -> webdriver.Chrome:
  """Headless Debian Chromium through Debian's chromedriver (no downloads).
  With user_data_dir the profile (cookies) survives a browser restart."""
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--autoplay-policy=no-user-gesture-required",
              "--window-size=1000,1000"):
    options.add_argument(arg)
  if user_data_dir:
    options.add_argument(f"--user-data-dir={user_data_dir}")
  return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _press(driver, key):
  from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=g-import-not-at-top
  ActionChains(driver).send_keys(key).perform()


def take_study_in_browser(
    driver: WebDriver, url: str, taste: Taste, external_id: str = "",
    timeout: float = 30, screenshot_dir: Optional[str] = None,
    max_trials: Optional[int] = None,
    playback_speed: float = BROWSER_PLAYBACK_SPEED
) -> Tuple[Optional[str], List[Tuple[int, int]]]:
  """Keyboard-only run through the study; returns (code, [(trial, value)]).
  Stops after max_trials ratings (code None) when given; a participant who
  has already consented in this browser goes straight on.  The clips play
  at playback_speed (Chromium allows up to 16)."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support import expected_conditions as ec  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  wait = WebDriverWait(driver, timeout)
  driver.get(url)
  shots = 0

  def shot(name):
    nonlocal shots
    if screenshot_dir:
      shots += 1
      driver.save_screenshot(f"{screenshot_dir}/{shots:02d}_{name}.png")

  if driver.find_elements(By.ID, "consent"):
    shot("consent")
    # The consent box has autofocus: Space ticks it, Tab -> id field, Enter.
    consent = driver.switch_to.active_element
    assert consent.get_attribute("id") == "consent", "consent box not focused"
    _press(driver, Keys.SPACE)
    _press(driver, Keys.TAB)
    _press(driver, external_id)
    _press(driver, Keys.ENTER)
  ratings = []
  while max_trials is None or len(ratings) < max_trials:
    wait.until(lambda d: "/study" in d.current_url or "/done" in d.current_url)
    if "/done" in driver.current_url:
      break
    trial_el = wait.until(ec.presence_of_element_located((By.ID, "trial")))
    trial = int(trial_el.get_attribute("data-trial"))
    driver.execute_script(
        "var speed = arguments[0];"
        "document.querySelectorAll('audio').forEach(function (a) {"
        " a.defaultPlaybackRate = speed; a.playbackRate = speed; });",
        playback_speed)
    left, right = (_AUDIO_RE.search(driver.find_element(
        By.ID, f"audio-{s}").get_attribute("src")).group(1)
                   for s in ("left", "right"))
    attention = driver.find_elements(By.CSS_SELECTOR, "#attention strong")
    value = taste.choose(left, right, int(attention[0].text.split()[0])
                         if attention else None)
    if not ratings:
      shot("trial_before_playing")
    if attention:
      shot("attention_check")
    for key, side in (("a", "left"), ("b", "right")):
      _press(driver, key)
      wait.until(ec.text_to_be_present_in_element((By.ID, f"status-{side}"),
                                                  "played"))
    _press(driver, str(value))
    if not ratings:
      shot("trial_rated")
    _press(driver, Keys.ENTER)
    wait.until(lambda d, t=trial: not d.find_elements(
        By.CSS_SELECTOR, f"#trial[data-trial='{t}']"))
    ratings.append((trial, value))
  if "/done" not in driver.current_url:
    return None, ratings
  code = wait.until(ec.presence_of_element_located(
      (By.ID, "completion-code"))).text.strip()
  shot("done")
  return code, ratings


def main(argv: Optional[Sequence[str]] = None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  from listening_study import stimuli  # pylint: disable=g-import-not-at-top
  import listening_study  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--url", required=True)
  parser.add_argument("--study_dir", required=True)
  parser.add_argument("--participants", type=int, default=12)
  parser.add_argument("--quality", default=None,
                      help="a quality per model, e.g. note_rnn:0,q:1.5 "
                      "(default note_rnn:0,q:1.5,psi:1.5,g:0.8 unless "
                      "--utility)")
  parser.add_argument("--utility", choices=sorted(preferences.UTILITIES),
                      default=None, help="a taste for the melody itself: "
                      "register (higher preferred), density (more notes), "
                      "none (the control: no preference)")
  parser.add_argument("--scale", type=float, default=1.0,
                      help="z = scale * (u(left) - u(right)) + noise")
  parser.add_argument("--noise", type=float, default=1.0,
                      help="the logistic noise's scale")
  parser.add_argument("--browser", action="store_true")
  parser.add_argument("--threads", type=int, default=1,
                      help="participants taking part at once (HTTP)")
  parser.add_argument("--playback_speed", type=float,
                      default=BROWSER_PLAYBACK_SPEED,
                      help="how much faster than real time the simulated "
                      "participants play the clips (the server's "
                      "--max_playback_speed must allow it; Chromium: <= 16)")
  parser.add_argument("--seed", type=int, default=0)
  console.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(args.study_dir))
  if args.utility is not None and args.quality is not None:
    parser.error("give --quality or --utility, not both")
  if args.threads < 1 or (args.browser and args.threads != 1):
    parser.error("--threads must be >= 1 (1 with --browser)")
  taste = dict(utility=preferences.UTILITIES[args.utility]) if args.utility \
      else dict(quality=parse_quality(args.quality or
                                      "note_rnn:0,q:1.5,psi:1.5,g:0.8"))

  def make_taste(k):
    return Taste(manifest, noise=args.noise, scale=args.scale,
                 seed=args.seed + k, **taste)

  if args.browser:
    driver = make_chromium_driver()
    try:
      for k in range(args.participants):
        driver.delete_all_cookies()
        code, ratings = take_study_in_browser(
            driver, args.url, make_taste(k), external_id=f"sim{k}",
            playback_speed=args.playback_speed)
        print(f"participant {k}: {len(ratings)} ratings, code {code}",
              flush=True)
    finally:
      driver.quit()
    return
  codes = take_part([HttpParticipant(args.url, make_taste(k),
                                     playback_speed=args.playback_speed)
                     for k in range(args.participants)],
                    threads=args.threads, prefix="sim")
  for k, code in enumerate(codes):
    print(f"participant {k}: code {code}", flush=True)


def take_part(participants: Sequence[HttpParticipant], threads: int = 1,
              prefix: str = "sim") -> List[str]:
  """Runs each participant's whole study (external id prefix + its index),
  `threads` at a time; -> their completion codes in order.  The first
  failure is raised once the others are done."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
    futures = [pool.submit(p.run, external_id=f"{prefix}{k}")
               for k, p in enumerate(participants)]
  return [f.result() for f in futures]


if __name__ == "__main__":
  console.install()
  random.seed()
  main()


class ServerProcess:
  """`python -m listening_study.serve` in a subprocess on a free port (the
  production path: gunicorn); `url` once it is listening."""

  def __init__(self, study_dir, admin_token, extra_args=(), timeout=90):
    import os  # pylint: disable=g-import-not-at-top
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    self.admin_token = admin_token
    self.process = subprocess.Popen(
        [sys.executable, "-m", "listening_study.serve",
         f"--study_dir={study_dir}", "--port=0",
         f"--admin_token={admin_token}", *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    self.output = []
    deadline = time.time() + timeout
    self.url = None
    while time.time() < deadline:
      line = self.process.stdout.readline()
      if not line:
        break
      self.output.append(line)
      match = re.search(r"running at (http://\S+)", line)
      if match:
        self.url = match.group(1)
        break
    if self.url is None:
      self.stop()
      raise RuntimeError("study server did not start:\n" +
                         "".join(self.output[-30:]))
    import threading  # pylint: disable=g-import-not-at-top
    threading.Thread(target=self._drain, daemon=True).start()

  def _drain(self):
    for line in self.process.stdout:
      self.output.append(line)

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=20)
      except Exception:  # pylint: disable=broad-except
        self.process.kill()
        self.process.wait()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.stop()
