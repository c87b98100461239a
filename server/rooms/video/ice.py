"""ICE: the STUN/TURN servers a participant and the server use, and the server's host candidates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from server.rooms.video.config import VideoSettings


def ice_servers_for(settings: VideoSettings, user_id: str, *, now_s: float | None = None) -> list[dict[str, Any]]:
    """The RTCIceServer list for one participant: the static servers plus, with a coturn shared secret,
    TURN credentials of the TURN REST scheme (username "<expiry>:<user>", password HMAC-SHA1 of it), so
    no long-lived TURN password ever reaches a browser."""
    servers = [dict(s) for s in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret:
        expiry = int((now_s if now_s is not None else time.time()) + settings.turn_ttl_s)
        username = f"{expiry}:{user_id}"
        digest = hmac.new(settings.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
        credential = base64.b64encode(digest).decode()
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return servers


def rtc_configuration(servers: list[dict[str, Any]]) -> RTCConfiguration:
    """Max-bundle: one ICE transport for every m-line. With aiortc's default ("balanced") a second
    m-line of a kind created in the same negotiation keeps a transport that bundling then discards,
    and its media never flows."""
    ice = []
    for s in servers:
        urls = s.get("urls") or []
        ice.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
    return RTCConfiguration(iceServers=ice or None, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


_original_host_addresses = aioice.ice.get_host_addresses


def pin_host_addresses(addresses: list[str] | None) -> None:
    """Offer exactly `addresses` as host candidates (None or empty: aioice's default again).

    aioice always leaves 127.0.0.1 out and offers every other interface; its only hook is the module
    function it calls, so this replaces it for the whole process (every peer connection in it).
    """
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    pinned = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
