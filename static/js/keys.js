// The API keys page: a Copy button for the key shown once after it is made.
(function () {
  "use strict";

  var buttons = document.querySelectorAll("[data-copy-target]");
  Array.prototype.forEach.call(buttons, function (button) {
    var target = document.getElementById(button.dataset.copyTarget);
    if (!target) {
      return;
    }
    button.hidden = false;

    function select() {
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Press Ctrl+C";
    }

    button.addEventListener("click", function () {
      var text = target.textContent.trim();
      var done = function () {
        button.textContent = "Copied";
        window.setTimeout(function () {
          button.textContent = "Copy";
        }, 2000);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, select);
      } else {
        select();
      }
    });
  });
})();
