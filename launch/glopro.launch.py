"""Runs the glopro node beside a robot's SLAM stack (needs launch / launch_ros from a ROS 2 distro).

ros2 launch glopro_ros glopro.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info world_frame:=map
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode

ARGUMENTS = {
    "image": ("image", "sensor_msgs/Image topic"),
    "image_qos": ("sensor_data", "sensor_data (best effort) or reliable (large images between processes)"),
    "camera_info": ("camera_info", "sensor_msgs/CameraInfo topic"),
    "keypoints": ("keypoints", "glopro_ros/Keypoints2DArray topic (input:=keypoints)"),
    "input": ("image", "image or keypoints"),
    "world_frame": ("map", "output frame"),
    "device": ("auto", "auto, cpu or cuda"),
    "body_model_path": ("", "SMPL-layout model file; empty: built-in default"),
    "regressor_checkpoint": ("", "user image regressor; empty: keypoint fit"),
    "use_sim_time": ("false", "true when replaying a bag with --clock"),
}


def generate_launch_description() -> LaunchDescription:
    config = Path(get_package_share_directory("glopro_ros")) / "config"
    params = config / "glopro.yaml"
    # Best-effort images between processes need room in Fast DDS's transports (README, "Images between processes").
    # Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE, Fast DDS 2 (Humble, Jazzy) FASTRTPS_DEFAULT_PROFILES_FILE.
    profile = EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(config / "fastdds_large_data.xml"))
    legacy_profile = EnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", default_value=profile)
    overrides = {name: LaunchConfiguration(name) for name in
                 ("input", "image_qos", "world_frame", "device", "body_model_path", "regressor_checkpoint",
                  "use_sim_time")}
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", legacy_profile),
        LifecycleNode(
            package="glopro_ros", executable="glopro_node", name="glopro", namespace="", output="screen",
            parameters=[str(params), overrides],
            remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info")),
                        ("keypoints", LaunchConfiguration("keypoints"))]),
    ])
