import { api, fail, status } from "./api.js";

const form = document.getElementById("login");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  status("Signing in…");
  try {
    await api("POST", "/session", { admin_key: form.elements.admin_key.value });
    form.elements.admin_key.value = "";
    location.assign(form.dataset.next || "/ui/playground");
  } catch (err) {
    fail(err);
  }
});
