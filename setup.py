"""pip install of the ROS-free part (core, perception, tools) and the `glopro` command line.

The ROS 2 package itself (messages, nodes, launch files) is built by CMakeLists.txt with colcon or
scripts/setup.sh; an ament_cmake build ignores this file.
"""
from setuptools import setup

setup()
