// Tether console: small improvements on pages that work without this script.
// - the token binding help follows the selected binding type;
// - the redirect URI field shows only when the authorization code grant is chosen;
// - the client authentication method shows only for confidential clients;
// - forms with data-confirm ask first.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function ready(f) { if (document.readyState !== "loading") { f(); } else { document.addEventListener("DOMContentLoaded", f); } }
  ready(function () {
    var binding = document.getElementById("binding");
    var help = document.getElementById("binding-help");
    if (binding && help) {
      var show = function () {
        help.querySelectorAll("[data-binding]").forEach(function (d) {
          d.classList.toggle("current", d.getAttribute("data-binding") === binding.value);
        });
      };
      binding.addEventListener("change", show);
      show();
    }
    var form = document.getElementById("app-form");
    if (form) {
      var needs = form.querySelectorAll("[data-needs]");
      var conf = form.querySelectorAll("[data-confidential]");
      var pub = document.getElementById("public");
      var update = function () {
        var chosen = {};
        form.querySelectorAll("input[name=grant_types]").forEach(function (c) { if (c.checked) { chosen[c.value] = true; } });
        needs.forEach(function (el) { el.hidden = !chosen[el.getAttribute("data-needs")]; });
        conf.forEach(function (el) { el.hidden = !!(pub && pub.checked); });
      };
      form.addEventListener("change", update);
      update();
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  });
})();
