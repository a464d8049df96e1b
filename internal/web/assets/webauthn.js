// Passkeys: the one script of Gatehouse's pages. A button with
// data-webauthn="create" or "get" reads the ceremony's options from the
// page's JSON block (#webauthn-options), asks the browser, puts the
// answer in its form's "webauthn" field and submits the form: the server
// does the rest. Without it (no JavaScript, no WebAuthn), the buttons stay
// hidden and the page's other ways work.
(function () {
  "use strict";
  if (!window.PublicKeyCredential) {
    return;
  }
  function dec(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    s += "=".repeat((4 - (s.length % 4)) % 4);
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function enc(buf) {
    var s = "";
    new Uint8Array(buf).forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function say(form, msg) {
    var out = form.querySelector("[data-webauthn-status]");
    if (out) {
      out.textContent = msg;
    }
  }
  async function run(btn) {
    var form = btn.form;
    var block = document.getElementById("webauthn-options");
    if (!form || !block) {
      return;
    }
    var pk = JSON.parse(block.textContent).publicKey;
    pk.challenge = dec(pk.challenge);
    var cred, out;
    if (btn.dataset.webauthn === "create") {
      pk.user.id = dec(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = dec(c.id); });
      cred = await navigator.credentials.create({ publicKey: pk });
      out = {
        id: cred.id, rawId: enc(cred.rawId), type: cred.type,
        response: {
          attestationObject: enc(cred.response.attestationObject),
          clientDataJSON: enc(cred.response.clientDataJSON),
          transports: cred.response.getTransports ? cred.response.getTransports() : []
        },
        clientExtensionResults: cred.getClientExtensionResults()
      };
    } else {
      (pk.allowCredentials || []).forEach(function (c) { c.id = dec(c.id); });
      cred = await navigator.credentials.get({ publicKey: pk });
      out = {
        id: cred.id, rawId: enc(cred.rawId), type: cred.type,
        response: {
          authenticatorData: enc(cred.response.authenticatorData),
          clientDataJSON: enc(cred.response.clientDataJSON),
          signature: enc(cred.response.signature),
          userHandle: cred.response.userHandle ? enc(cred.response.userHandle) : null
        },
        clientExtensionResults: cred.getClientExtensionResults()
      };
    }
    form.elements.webauthn.value = JSON.stringify(out);
    form.submit();
  }
  document.querySelectorAll("button[data-webauthn]").forEach(function (btn) {
    btn.hidden = false;
    btn.addEventListener("click", function (ev) {
      ev.preventDefault();
      btn.disabled = true;
      run(btn).catch(function (err) {
        btn.disabled = false;
        say(btn.form, "Your browser did not use a passkey (" + (err && err.name ? err.name : "error") + "). Try again, or use another way.");
      });
    });
  });
})();
