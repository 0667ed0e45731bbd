"""Plays a bag with simulated time into the glopro node (needs a ROS 2 distro with rosbag2).

ros2 launch glopro_ros replay.launch.py bag:=/path/to/bag image:=/camera/image_raw camera_info:=/camera/camera_info
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder or file to play"),
        DeclareLaunchArgument("image", default_value="image"),
        DeclareLaunchArgument("camera_info", default_value="camera_info"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("glopro_ros"), "launch", "glopro.launch.py"])),
            launch_arguments={"use_sim_time": "true", "image": LaunchConfiguration("image"),
                              "camera_info": LaunchConfiguration("camera_info")}.items()),
        ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate")],
                       output="screen"),
    ])
