/**
 * REST client (same origin, relative paths) and the session's tokens.
 *
 * Tokens live in sessionStorage: they survive a reload but not the tab, which suits shared clinical
 * workstations. The access token is refreshed shortly before it expires and once after a 401.
 */

export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export interface Me {
  id: string;
  site_id: string;
  username: string;
  display_name: string;
  role: string;
}

export interface Room {
  id: string;
  kind: string;
  title: string;
  site_id: string;
  case_id: string | null;
  owner_id: string;
  archived: boolean;
  role: string | null;
}

export interface Member {
  user_id: string;
  display_name: string;
  site_id: string;
  role: string;
}

export interface Invite {
  id: string;
  token: string;
  url: string;
  role: string;
  expires_at_ms: number;
  max_uses: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const STORAGE_KEY = "trinity.session";
const REFRESH_MARGIN_MS = 60_000;

interface Session {
  access: string;
  refresh: string;
  expiresAt: number; // ms since the epoch
}

let session: Session | null = load();
let refreshing: Promise<string> | null = null;
const logoutListeners: Array<() => void> = [];

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function store(tokens: Tokens): void {
  session = { access: tokens.access_token, refresh: tokens.refresh_token, expiresAt: Date.now() + tokens.expires_in * 1000 };
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

function forget(): void {
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
  for (const fn of logoutListeners) fn();
}

export function isLoggedIn(): boolean {
  return session !== null;
}

export function onLoggedOut(fn: () => void): void {
  logoutListeners.push(fn);
}

async function parseError(res: Response): Promise<ApiError> {
  return errorFromBody(res.status, res.statusText, await res.text().catch(() => ""));
}

/** Every 4xx/5xx of the server carries `{"error": {"code", "message"}}`; anything else keeps the status. */
function errorFromBody(status: number, statusText: string, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    return new ApiError(status, body.error?.code ?? "error", body.error?.message ?? (statusText || `HTTP ${status}`));
  } catch {
    return new ApiError(status, "error", statusText || `HTTP ${status}`);
  }
}

async function refresh(): Promise<string> {
  if (!session) throw new ApiError(401, "unauthenticated", "not logged in");
  // One refresh at a time: the refresh token rotates, so parallel refreshes would invalidate each other.
  refreshing ??= (async () => {
    try {
      const res = await fetch("/api/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: session?.refresh }),
      });
      if (!res.ok) {
        const err = await parseError(res);
        if (res.status === 401) forget();
        throw err;
      }
      store((await res.json()) as Tokens);
      return session!.access;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A usable access token, refreshed first when it is about to expire (used for the WebSocket hello). */
export async function accessToken(forceRefresh = false): Promise<string> {
  if (!session) throw new ApiError(401, "unauthenticated", "not logged in");
  if (forceRefresh || session.expiresAt - Date.now() < REFRESH_MARGIN_MS) return refresh();
  return session.access;
}

export async function request<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session) headers.Authorization = `Bearer ${await accessToken()}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && session && !retried && !path.startsWith("/api/auth/")) {
    await refresh();
    return request<T>(method, path, body, true);
  }
  if (!res.ok) {
    const err = await parseError(res);
    if (res.status === 401 && !path.startsWith("/api/auth/login")) forget();
    throw err;
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** GET a binary resource (slice images) with the session's token; refreshes once after a 401. */
export async function getBlob(path: string, signal?: AbortSignal, retried = false): Promise<Blob> {
  const headers: Record<string, string> = session ? { Authorization: `Bearer ${await accessToken()}` } : {};
  const res = await fetch(path, { headers, signal });
  if (res.status === 401 && session && !retried) {
    await refresh();
    return getBlob(path, signal, true);
  }
  if (!res.ok) throw await parseError(res);
  return res.blob();
}

export type UploadProgress = (sentBytes: number, totalBytes: number) => void;

/**
 * POST multipart/form-data. XMLHttpRequest rather than fetch because only it reports upload progress,
 * which matters for a CT study of several hundred megabytes. Refreshes the token once after a 401.
 */
export async function uploadForm<T>(path: string, form: FormData, onProgress?: UploadProgress, retried = false): Promise<T> {
  const token = session ? await accessToken() : null;
  const { status, statusText, text } = await new Promise<{ status: number; statusText: string; text: string }>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onload = () => resolve({ status: xhr.status, statusText: xhr.statusText, text: xhr.responseText });
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was interrupted (network error)."));
    xhr.send(form);
  });
  if (status === 401 && session && !retried) {
    await refresh();
    return uploadForm<T>(path, form, onProgress, true);
  }
  if (status < 200 || status >= 300) {
    const err = errorFromBody(status, statusText, text);
    if (status === 401) forget();
    throw err;
  }
  return JSON.parse(text) as T;
}

export async function login(username: string, password: string): Promise<void> {
  store(await request<Tokens>("POST", "/api/auth/login", { username, password }));
}

export async function logout(): Promise<void> {
  try {
    if (session) await request<void>("POST", "/api/auth/logout");
  } finally {
    forget();
  }
}

export const api = {
  me: () => request<Me>("GET", "/api/me"),
  rooms: () => request<Room[]>("GET", "/api/rooms"),
  room: (id: string) => request<Room>("GET", `/api/rooms/${encodeURIComponent(id)}`),
  createRoom: (title: string, kind = "consultation") => request<Room>("POST", "/api/rooms", { title, kind }),
  members: (id: string) => request<Member[]>("GET", `/api/rooms/${encodeURIComponent(id)}/members`),
  createInvite: (id: string, role = "participant", maxUses = 1) =>
    request<Invite>("POST", `/api/rooms/${encodeURIComponent(id)}/invites`, { role, max_uses: maxUses }),
  acceptInvite: (token: string) => request<Room>("POST", `/api/invites/${encodeURIComponent(token)}/accept`),
};

/** Accepts a bare invite token or any link containing `#/invite/<token>`. */
export function inviteTokenFrom(input: string): string | null {
  const text = input.trim();
  if (!text) return null;
  const match = /#\/invite\/([^/?#\s]+)/.exec(text);
  if (match) return decodeURIComponent(match[1]);
  return /^[A-Za-z0-9_-]{8,200}$/.test(text) ? text : null;
}
