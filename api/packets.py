"""Socket.IO packets whose binary check is done by the JSON encoder.

python-socketio scans every outgoing payload recursively, in Python, for
bytes (which it would send as binary attachments) before encoding it as JSON.
For a 200-entry `container_list` the scan cost three times the encoding, and
each response is encoded twice (the response event and the acknowledgement).
This packet class encodes first: only when the encoder meets something it
cannot encode (bytes) does it fall back to the original scan. The wire format
is unchanged; incoming packets are decoded exactly as before.
"""

from __future__ import annotations

from typing import Any

from socketio import packet


class JsonFirstPacket(packet.Packet):
    def __init__(
        self,
        packet_type: int = packet.EVENT,
        data: Any = None,
        namespace: str | None = None,
        id: int | None = None,
        binary: bool | None = None,
        encoded_packet: Any = None,
    ) -> None:
        self._encoded_data: str | None = None
        if binary is None and encoded_packet is None and data is not None:
            try:
                self._encoded_data = self.json.dumps(data, separators=(",", ":"))
                binary = False
            except TypeError:
                pass  # bytes somewhere (or something JSON cannot hold): the base class scans and decides
        super().__init__(packet_type, data, namespace, id, binary, encoded_packet)

    def encode(self) -> Any:
        if self._encoded_data is None or self.packet_type in (packet.BINARY_EVENT, packet.BINARY_ACK):
            return super().encode()
        encoded = str(self.packet_type)
        if self.namespace is not None and self.namespace != "/":
            encoded += self.namespace + ","
        if self.id is not None:
            encoded += str(self.id)
        return encoded + self._encoded_data
