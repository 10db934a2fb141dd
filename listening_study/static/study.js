// Listening study page logic: play buttons, "played to the end" reports,
// rating submission, keyboard shortcuts (A / B play, 1-7 choose, Enter submit).
(function () {
  "use strict";

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.error || ("HTTP " + r.status)); }
        return j;
      });
    });
  }

  var trial = document.getElementById("trial");
  if (trial) { setUpTrial(trial); }
  var commentForm = document.getElementById("comment-form");
  if (commentForm) { setUpComment(commentForm); }

  function setUpTrial(trial) {
    var id = trial.dataset.trial;
    var played = {left: trial.dataset.playedLeft === "true",
                  right: trial.dataset.playedRight === "true"};
    var audio = {left: document.getElementById("audio-left"),
                 right: document.getElementById("audio-right")};
    var buttons = {left: document.getElementById("play-left"),
                   right: document.getElementById("play-right")};
    var scale = document.getElementById("scale");
    var submit = document.getElementById("submit");
    var message = document.getElementById("message");
    var form = document.getElementById("rating-form");
    var shownAt = Date.now();
    var sending = false;

    function showStatus(side, text) {
      document.getElementById("status-" + side).textContent = text;
    }
    function update() {
      ["left", "right"].forEach(function (side) {
        if (played[side]) { showStatus(side, "played \u2713"); }
      });
      var ready = played.left && played.right;
      scale.disabled = !ready;
      submit.disabled = !ready || !form.querySelector("input[name=value]:checked");
      if (ready && !form.querySelector("input[name=value]:checked")) {
        scale.querySelector("legend").textContent = "Your answer (press 1\u20137)";
      }
    }
    function play(side) {
      var other = side === "left" ? "right" : "left";
      audio[other].pause();
      audio[side].currentTime = 0;
      showStatus(side, "playing\u2026");
      var p = audio[side].play();
      if (p && p.catch) {
        p.catch(function (e) { showStatus(side, "could not play: " + e.message); });
      }
    }
    ["left", "right"].forEach(function (side) {
      buttons[side].addEventListener("click", function () { play(side); });
      audio[side].addEventListener("ended", function () {
        post("/api/trials/" + id + "/played", {side: side}).then(function () {
          played[side] = true;
          update();
        }).catch(function (e) { message.textContent = e.message; });
      });
    });
    form.addEventListener("change", update);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var checked = form.querySelector("input[name=value]:checked");
      if (!checked || !(played.left && played.right) || sending) { return; }
      sending = true;
      submit.disabled = true;
      post("/api/trials/" + id + "/rating",
           {value: parseInt(checked.value, 10), response_ms: Date.now() - shownAt})
        .then(function (j) { window.location.assign(j.next); })
        .catch(function (e) {
          sending = false;
          message.textContent = e.message;
          update();
        });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
      var key = ev.key.toLowerCase();
      if (key === "a") { ev.preventDefault(); play("left"); }
      else if (key === "b") { ev.preventDefault(); play("right"); }
      else if (/^[1-7]$/.test(key) && !scale.disabled) {
        ev.preventDefault();
        var input = document.getElementById("value-" + key);
        input.checked = true;
        input.focus();
        update();
      } else if (key === "enter" && !submit.disabled) {
        ev.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
      }
    });
    update();
    buttons.left.focus();
  }

  function setUpComment(form) {
    var status = document.getElementById("comment-status");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      post("/api/comment", {text: document.getElementById("comment").value})
        .then(function () { status.textContent = "Thank you, comment saved."; })
        .catch(function (e) { status.textContent = e.message; });
    });
  }
})();
