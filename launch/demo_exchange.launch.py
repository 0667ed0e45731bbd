"""Starts the demo HumanStateArray publisher and a printing subscriber (needs launch_ros)."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("people", default_value="2", description="example people to publish"),
        Node(package="glopro_ros", executable="demo_publisher", output="screen",
             parameters=[{"people": LaunchConfiguration("people")}]),
        Node(package="glopro_ros", executable="demo_subscriber", arguments=["--count", "0"], output="screen"),
    ])
