/** #/admin: the site's administration for admins — the audit trail (filter, CSV, verify) and the site's users and quota. */
import { api } from "../api";
import { mountAuditBrowser } from "../admin/audit";
import { mountSiteAdmin } from "../admin/site";
import { h } from "../dom";

export function mountAdmin(root: HTMLElement): () => void {
  const disposers: Array<() => void> = [];
  const audit = h("section", { class: "admin-audit" });
  const site = h("section", { class: "admin-site" });
  const message = h("p", { class: "muted" }, "Loading…");
  root.replaceChildren(
    h("header", { class: "admin-header" }, h("a", { href: "#/rooms" }, "← My rooms"), h("h1", {}, "Administration")),
    message,
    site,
    audit,
  );
  api
    .me()
    .then((me) => {
      if (me.role !== "admin") {
        message.textContent = "Only a site's admins see its administration.";
        return;
      }
      message.textContent = `Site ${me.site_id}`;
      disposers.push(mountSiteAdmin(site, me.site_id), mountAuditBrowser(audit));
    })
    .catch((err: Error) => (message.textContent = err.message));
  return () => disposers.forEach((dispose) => dispose());
}
