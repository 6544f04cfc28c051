"""How a SCSI or NVMe disk is reached: FC, iSCSI, SAS, NVMe fabrics.

The SCSI device's place in ``devices/`` names its transport objects
(``host5/rport-5:0-2/target5:0:1/5:0:1:3`` for FC,
``host3/session1/target3:0:0/3:0:0:1`` for iSCSI, ``end_device-1:0`` for
SAS); their attributes live under ``class/fc_host``, ``class/fc_remote_ports``,
``class/iscsi_session``, ``class/iscsi_connection`` and ``class/sas_device``.

``transport_id`` is one short string per path, so ``owners_transport_ids``
of a multipath map tell which path an error came through:
``fc:<initiator WWPN>-<target WWPN>``, ``iscsi:<target IQN>,<address>:<port>``,
``sas:<SAS address>``, ``nvme:<transport>:<address>``.
"""

from __future__ import annotations

import os

from .sysfs import Sysfs

# (dict key, class attribute) read for each transport object
_FC_HOST_ATTRS = (("host_wwpn", "port_name"), ("host_wwnn", "node_name"),
                  ("host_port_state", "port_state"), ("host_speed", "speed"),
                  ("host_port_id", "port_id"))
_FC_RPORT_ATTRS = (("target_wwpn", "port_name"), ("target_wwnn", "node_name"),
                   ("target_port_state", "port_state"), ("target_port_id", "port_id"))
_ISCSI_SESSION_ATTRS = (("target_name", "targetname"), ("tpgt", "tpgt"),
                        ("session_state", "state"), ("initiator_name", "initiatorname"))
_ISCSI_CONNECTION_ATTRS = (("address", "persistent_address"), ("port", "persistent_port"))
_NVME_CTRL_ATTRS = (("transport", "transport"), ("address", "address"), ("model", "model"),
                    ("serial", "serial"), ("subsysnqn", "subsysnqn"))


def _read(sysfs: Sysfs, cls: str, instance: str, table) -> dict[str, str]:
    out = {}
    for key, attr in table:
        value = sysfs.class_attr(cls, instance, attr)
        if value:
            out[key] = value
    return out


def scsi_transport(sysfs: Sysfs, name: str) -> tuple[str, dict[str, str]]:
    base = sysfs.block_dir(name)
    if not base:
        return "", {}
    parts = os.path.realpath(os.path.join(base, "device")).split("/")
    detail: dict[str, str] = {"hctl": parts[-1]}
    host = next((p for p in parts if p.startswith("host") and p[4:].isdigit()), None)
    rport = next((p for p in parts if p.startswith("rport-")), None)
    session = next((p for p in parts if p.startswith("session") and p[7:].isdigit()), None)
    if host and rport:
        detail.update(type="FC", host=host, rport=rport)
        detail.update(_read(sysfs, "fc_host", host, _FC_HOST_ATTRS))
        detail.update(_read(sysfs, "fc_remote_ports", rport, _FC_RPORT_ATTRS))
        tid = f"fc:{detail.get('host_wwpn', host)}-{detail.get('target_wwpn', rport)}"
        return tid, detail
    if session:
        detail.update(type="iSCSI", session=session)
        detail.update(_read(sysfs, "iscsi_session", session, _ISCSI_SESSION_ATTRS))
        prefix = "connection" + session[len("session"):] + ":"
        for conn in sysfs.class_instances("iscsi_connection"):
            if conn.startswith(prefix):
                conn_detail = _read(sysfs, "iscsi_connection", conn, _ISCSI_CONNECTION_ATTRS)
                if not conn_detail:  # older kernels only fill address/port
                    conn_detail = _read(sysfs, "iscsi_connection", conn, (("address", "address"), ("port", "port")))
                detail.update(conn_detail)
                break
        tid = f"iscsi:{detail.get('target_name', session)},{detail.get('address', '')}:{detail.get('port', '')}"
        return tid, detail
    sas_address = sysfs.attr(name, "device/sas_address")
    end_device = next((p for p in parts if p.startswith("end_device-")), None)
    if not sas_address and end_device:
        sas_address = sysfs.class_attr("sas_device", end_device, "sas_address")
    if sas_address:
        detail.update(type="SAS", sas_address=sas_address)
        return f"sas:{sas_address}", detail
    return "", detail


def nvme_transport(sysfs: Sysfs, name: str) -> tuple[str, dict[str, str]]:
    controller = sysfs.target_name(name, "device")
    if not controller:
        return "", {}
    subsystem = ""
    if controller.startswith("nvme-subsys"):
        # A native-multipath namespace head (nvme1n1) hangs off its subsystem;
        # its I/O goes through the subsystem's controllers (nvme1c1n1 is the
        # hidden path disk on controller nvme1): name the first one.
        subsystem = controller
        paths = [c for c in sysfs.class_instances(f"nvme-subsystem/{subsystem}")
                 if c.startswith("nvme") and c[4:].isdigit()]
        if not paths:
            return "", {"subsystem": subsystem}
        controller = paths[0]
    detail = {"controller": controller}
    if subsystem:
        detail["subsystem"] = subsystem
    nsid = sysfs.attr(name, "nsid")
    if nsid:
        detail["nsid"] = nsid
    detail.update(_read(sysfs, "nvme", controller, _NVME_CTRL_ATTRS))
    if "transport" not in detail:
        return "", detail
    return f"nvme:{detail['transport']}:{detail.get('address', '')}", detail
