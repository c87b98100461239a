/** Login form; on success goes back to where the user was heading (e.g. an invite link). */
import { ApiError, login } from "../api";
import { h } from "../dom";

export function mountLogin(root: HTMLElement, next: string): void {
  const username = h("input", { name: "username", autocomplete: "username", required: true, testid: "login-username", autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, testid: "login-password" });
  const error = h("p", { class: "error", testid: "login-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary wide", type: "submit", testid: "login-submit" }, "Log in");
  const form = h(
    "form",
    { class: "card login-card", testid: "login-form" },
    h("h1", {}, "Trinity"),
    h("p", { class: "muted" }, "Remote consultations for medical 3D printing"),
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    error,
    submit,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      await login(username.value.trim(), password.value);
      location.hash = next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/rooms";
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "Wrong username or password." : err instanceof Error ? err.message : "Login failed.";
      error.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(h("main", { class: "center-page" }, form));
  username.focus();
}
