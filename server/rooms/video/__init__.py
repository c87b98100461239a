"""Video consultation: WebRTC signaling on the room WebSocket, aiortc media relayed by the server,
recording with everyone's consent, printer cameras in maker rooms (docs/protocol.md, "Video")."""
