// nib's owner pages: copy buttons, the share page's character count, and the phone way
// to share opened on touch screens. Loaded with <script src> so the pages'
// Content-Security-Policy can forbid inline script; every page works without it (the
// count is also computed by the server when the page is made).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var status = document.getElementById("copy-status");
  document.querySelectorAll("button.copy[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var text = b.getAttribute("data-copy");
      var done = function () {
        var old = b.textContent;
        b.textContent = "Copied";
        if (status) status.textContent = "Copied " + text;
        setTimeout(function () { b.textContent = old; }, 1500);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
      } else {
        fallback(text);
        done();
      }
    });
  });
  function fallback(text) {
    var t = document.createElement("textarea");
    t.value = text;
    document.body.appendChild(t);
    t.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(t);
  }

  // The share page: the post's length as it is typed, the short link included (what the
  // link counts for is in data-link: 23 on X and Mastodon, which shorten links, else the
  // link's own length, plus the space before it).
  var text = document.getElementById("text");
  var out = document.getElementById("count-out");
  if (text && out && text.hasAttribute("data-link")) {
    var link = parseInt(text.getAttribute("data-link"), 10) || 0;
    var limit = parseInt(text.getAttribute("data-limit") || "0", 10);
    var line = document.getElementById("count");
    var update = function () {
      var n = Array.from(text.value.trim()).length + link;
      out.textContent = String(n);
      if (line && limit) line.classList.toggle("over", n > limit);
    };
    text.addEventListener("input", update);
    update();
  }

  // A phone or tablet has no bookmarks bar to drag to: its way in is shown open.
  var phone = document.querySelector(".bookmarklets details");
  if (phone && window.matchMedia && matchMedia("(pointer: coarse)").matches) phone.open = true;

  var short = document.querySelector("input.short");
  if (short) short.select();
});
