"""glopro_ros: uncertainty-aware 3D human pose tracking around a moving robot (GloPro).

Layers: ``core`` (ROS-free maths and filtering), ``perception`` (images to measurements),
``ros`` (rclpy nodes and conversions), ``tools`` (command line).
"""
from pkgutil import extend_path

# The generated message package (glopro_ros.msg and its typesupport libraries) is installed by the
# ament_cmake build into another glopro_ros folder on sys.path; extend_path lets a source checkout
# and that build form one package, as a colcon install does in a single folder.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
