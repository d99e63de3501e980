"""Write tiny RealSense-layout ROS1 bags with ``rosbags`` (librealsense ``ros_file_format.h``, file version 3).

Used by tests to make recordings of known geometry at test time (uncompressed; see docs/DRIVERS.md).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from edgepad.geometry import Extrinsics, Intrinsics

_STREAM_INFO = "uint32 fps\nstring encoding\nbool is_recommended\n"
_MODEL = {"none": "Brown Conrady", "brown_conrady": "Brown Conrady",
          "inverse_brown_conrady": "Inverse Brown Conrady", "modified_brown_conrady": "Modified Brown Conrady"}


def _quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix → (x, y, z, w)."""
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = math.copysign(math.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    return x, y, z, w


def write_realsense_bag(path: Path, depth_intr: Intrinsics, color_intr: Intrinsics, depth_to_color: Extrinsics,
                        depth_frames: Sequence[np.ndarray], color_frames: Sequence[np.ndarray], *,
                        fps: int = 30, depth_units: float = 0.001, serial: str = "000000000042",
                        depth_numbers: Sequence[int] | None = None, color_numbers: Sequence[int] | None = None,
                        t0_ms: float = 1000.0, color_offset_ms: float = 1.0) -> Path:
    """Write depth (uint16 H×W) and colour (uint8 H×W×3) frames as a RealSense bag.

    Frame ``k`` of each stream is stamped ``t0_ms + number * period`` (colour + ``color_offset_ms``) in the
    device clock; frame numbers default to 1..N (gaps = drops).
    """
    import pytest
    pytest.importorskip("rosbags", reason="the test extra provides rosbags (pip install 'edgepad[test]')")
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    ts = get_typestore(Stores.ROS1_NOETIC)
    ts.register(get_types_from_msg(_STREAM_INFO, "realsense_msgs/msg/StreamInfo"))
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    KV = T["diagnostic_msgs/msg/KeyValue"]
    path = Path(path)
    if path.exists():
        path.unlink()
    period_ms = 1000.0 / fps
    depth_numbers = list(depth_numbers or range(1, len(depth_frames) + 1))
    color_numbers = list(color_numbers or range(1, len(color_frames) + 1))

    with Writer(path) as w:
        conns: dict[str, object] = {}

        def put(topic: str, msgtype: str, msg, t_ns: int) -> None:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=ts)
            w.write(conns[topic], t_ns, ts.serialize_ros1(msg, msgtype))

        put("/file_version", "std_msgs/msg/UInt32", T["std_msgs/msg/UInt32"](data=3), 1)
        for k, v in (("Name", "Intel RealSense D435"), ("Serial Number", serial), ("Firmware Version", "05.09.14.00"),
                     ("Product Line", "D400")):
            put("/device_0/info", "diagnostic_msgs/msg/KeyValue", KV(key=k, value=v), 1)
        put("/device_0/sensor_0/info", "diagnostic_msgs/msg/KeyValue", KV(key="Name", value="Stereo Module"), 1)
        put("/device_0/sensor_1/info", "diagnostic_msgs/msg/KeyValue", KV(key="Name", value="RGB Camera"), 1)
        put("/device_0/sensor_0/option/Depth Units/value", "std_msgs/msg/Float32",
            T["std_msgs/msg/Float32"](data=depth_units), 1)
        put("/device_0/sensor_0/option/Depth Units/description", "std_msgs/msg/String",
            T["std_msgs/msg/String"](data="Number of meters represented by a single depth unit"), 1)
        streams = (("/device_0/sensor_0/Depth_0", depth_intr, "mono16", Extrinsics.identity()),
                   ("/device_0/sensor_1/Color_0", color_intr, "rgb8", depth_to_color))
        for s, intr, enc, ext in streams:
            put(f"{s}/info", "realsense_msgs/msg/StreamInfo",
                T["realsense_msgs/msg/StreamInfo"](fps=fps, encoding=enc, is_recommended=True), 1)
            k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], dtype=np.float64)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=Header(seq=0, stamp=Time(sec=0, nanosec=0), frame_id=""), height=intr.height,
                width=intr.width, distortion_model=_MODEL[intr.distortion], D=np.asarray(intr.dist5, np.float64),
                K=k, R=np.zeros(9), P=np.zeros(12), binning_x=0, binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False))
            put(f"{s}/info/camera_info", "sensor_msgs/msg/CameraInfo", info, 1)
            qx, qy, qz, qw = _quaternion(ext.r)
            tf = T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=ext.t[0], y=ext.t[1], z=ext.t[2]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
            put(f"{s}/tf/0", "geometry_msgs/msg/Transform", tf, 1)
        items = []
        for img, num in zip(depth_frames, depth_numbers):
            items.append((t0_ms + num * period_ms, streams[0][0], img, num, "mono16", 2))
        for img, num in zip(color_frames, color_numbers):
            items.append((t0_ms + num * period_ms + color_offset_ms, streams[1][0], img, num, "rgb8", 3))
        items.sort(key=lambda it: it[0])
        for t_ms, s, img, num, enc, bpp in items:
            t_ns = int(round(t_ms * 1e6))
            img = np.ascontiguousarray(img)
            msg = T["sensor_msgs/msg/Image"](
                header=Header(seq=num, stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="0"),
                height=img.shape[0], width=img.shape[1], encoding=enc, is_bigendian=0, step=img.shape[1] * bpp,
                data=img.view(np.uint8).reshape(-1))
            put(f"{s}/image/data", "sensor_msgs/msg/Image", msg, t_ns)
            for k, v in (("timestamp_domain", "Hardware Clock"), ("system_time", f"{t_ms:.6f}"),
                         ("Frame Counter", str(num))):
                put(f"{s}/image/metadata", "diagnostic_msgs/msg/KeyValue", KV(key=k, value=v), t_ns)
    return path
