/** Site administration: users (role, active), storage quota and usage, open invitations. */
import { request } from "../api";
import { clear, h, toast } from "../dom";

interface AdminUser { id: string; username: string; display_name: string; email: string | null; role: string; active: boolean }
interface SiteInfo { id: string; name: string; storage_quota_bytes: number | null; used_bytes: number }
interface Invites { invites: Array<{ room_title: string; role: string; uses: number; max_uses: number; expires_at_ms: number }>; cross_site_members: Array<{ room_title: string; display_name: string; site_id: string; role: string }> }

const GiB = 1024 ** 3;

/** Entry: mount the site admin page into `root` for the admin's `siteId`; returns dispose. */
export function mountSiteAdmin(root: HTMLElement, siteId: string): () => void {
  const users = h("tbody");
  const storage = h("div", { class: "storage" });
  const invites = h("div", { class: "invites" });

  async function patchUser(user: AdminUser, change: Partial<AdminUser>): Promise<void> {
    try {
      await request("PATCH", `/api/admin/users/${encodeURIComponent(user.id)}`, change);
      await load();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  }

  async function setQuota(site: SiteInfo): Promise<void> {
    const answer = prompt("Quota in GiB (empty: unlimited)", site.storage_quota_bytes === null ? "" : String(site.storage_quota_bytes / GiB));
    if (answer === null) return;
    const quota = answer.trim() === "" ? null : Math.round(Number(answer) * GiB);
    try {
      await request("PATCH", `/api/admin/sites/${encodeURIComponent(site.id)}`, { storage_quota_bytes: quota });
      await load();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  }

  async function load(): Promise<void> {
    const [list, roles, sites, open] = await Promise.all([
      request<AdminUser[]>("GET", "/api/admin/users"),
      request<Array<{ role: string }>>("GET", "/api/admin/roles"),
      request<SiteInfo[]>("GET", "/api/admin/sites"),
      request<Invites>("GET", "/api/admin/invites"),
    ]);
    clear(users);
    for (const u of list) {
      const role = h("select", { onchange: (e: Event) => void patchUser(u, { role: (e.target as HTMLSelectElement).value }) },
        ...roles.map((r) => h("option", { value: r.role, selected: r.role === u.role }, r.role)));
      users.appendChild(h("tr", {}, h("td", {}, u.username), h("td", {}, u.display_name), h("td", {}, u.email ?? ""), h("td", {}, role),
        h("td", {}, h("button", { onclick: () => void patchUser(u, { active: !u.active }) }, u.active ? "Deactivate" : "Activate"))));
    }
    clear(storage);
    for (const s of sites.filter((x) => x.id === siteId)) {
      const quota = s.storage_quota_bytes === null ? "unlimited" : `${(s.storage_quota_bytes / GiB).toFixed(1)} GiB`;
      storage.append(h("p", {}, `${s.name}: ${(s.used_bytes / GiB).toFixed(2)} GiB used of ${quota} `, h("button", { onclick: () => void setQuota(s) }, "Set quota…")));
    }
    clear(invites);
    for (const i of open.invites) invites.append(h("p", {}, `${i.room_title}: ${i.role} invite, ${i.uses}/${i.max_uses} used, expires ${new Date(i.expires_at_ms).toLocaleString()}`));
    for (const m of open.cross_site_members) invites.append(h("p", {}, `${m.display_name} (${m.site_id}) is ${m.role} in ${m.room_title}`));
  }

  const panel = h("section", { class: "admin-site", testid: "admin-site" },
    h("h2", {}, "Users"), h("table", {}, h("thead", {}, h("tr", {}, ...["User", "Name", "E-mail", "Role", ""].map((t) => h("th", {}, t)))), users),
    h("h2", {}, "Storage"), storage, h("h2", {}, "Invitations and guests"), invites);
  root.appendChild(panel);
  void load().catch((e: Error) => toast(e.message, "error"));
  return () => panel.remove();
}
