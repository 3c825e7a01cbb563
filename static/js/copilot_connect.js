// The Copilot page while a device-flow sign-in is in progress: copy the code, and ask
// chatsite (never GitHub directly) whether the code was entered, as often as GitHub allows.
(function () {
  "use strict";

  var flow = document.getElementById("copilot-flow");
  if (!flow) {
    return;
  }
  var pollUrl = flow.dataset.pollUrl;
  var interval = parseInt(flow.dataset.interval, 10) || 5;
  var firstWait = parseInt(flow.dataset.retryIn, 10);
  var csrfInput = flow.querySelector("input[name=csrfmiddlewaretoken]");
  var csrf = csrfInput ? csrfInput.value : "";
  var statusLine = document.getElementById("flow-status");
  var codeElement = document.getElementById("user-code");
  var copyButton = document.getElementById("copy-code");
  var pollForm = document.getElementById("poll-form");
  var restartForm = document.getElementById("restart-form");
  var timer = null;
  var inFlight = false;
  var finished = false;

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error-text", kind === "error");
    statusLine.classList.toggle("ok-text", kind === "ok");
  }

  function schedule(seconds) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, Math.max(1, seconds) * 1000);
  }

  function fail(message) {
    finished = true;
    window.clearTimeout(timer);
    setStatus(message || "The connection did not complete. Start again.", "error");
    if (pollForm) {
      pollForm.hidden = true;
    }
    if (restartForm) {
      restartForm.hidden = false;
    }
  }

  function handle(answer) {
    if (typeof answer.interval === "number" && answer.interval > 0) {
      interval = answer.interval;
    }
    var wait = typeof answer.retry_in === "number" ? answer.retry_in : interval;
    switch (answer.status) {
      case "pending":
        setStatus(answer.message || "Waiting for the code to be entered on GitHub…");
        schedule(wait);
        break;
      case "slow_down":
        setStatus(answer.message || "Waiting for the code to be entered on GitHub…");
        schedule(wait);
        break;
      case "success":
        finished = true;
        setStatus("Connected. Loading…", "ok");
        window.location.assign(window.location.pathname);
        break;
      case "none":
        // Finished or cancelled in another tab: show what is true now.
        finished = true;
        window.location.assign(window.location.pathname);
        break;
      default:
        fail(answer.message);
    }
  }

  function poll() {
    if (finished || inFlight) {
      return;
    }
    inFlight = true;
    fetch(pollUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") === -1) {
          // Signed out meanwhile, or the server answered with a page: reload to see it.
          finished = true;
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (answer) {
        inFlight = false;
        if (answer) {
          handle(answer);
        }
      })
      .catch(function () {
        inFlight = false;
        setStatus("Could not reach chatsite; trying again…", "error");
        schedule(interval);
      });
  }

  if (pollForm) {
    pollForm.addEventListener("submit", function (event) {
      event.preventDefault();
      window.clearTimeout(timer);
      setStatus("Checking…");
      poll();
    });
  }

  if (copyButton && codeElement) {
    copyButton.hidden = false;
    copyButton.addEventListener("click", function () {
      var code = codeElement.textContent.trim();
      var done = function () {
        copyButton.textContent = "Copied";
        window.setTimeout(function () {
          copyButton.textContent = "Copy";
        }, 2000);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(code).then(done, function () {
          selectCode();
        });
      } else {
        selectCode();
      }
    });
  }

  function selectCode() {
    var range = document.createRange();
    range.selectNodeContents(codeElement);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    copyButton.textContent = "Press Ctrl+C";
  }

  schedule(isNaN(firstWait) ? interval : firstWait);
})();
