"""Launch the navigation pipeline: camera -> goggles_node -> image_sim -> policy_node -> cmd_vel.

    ros2 launch vr_goggles navigation.launch.py camera:=/camera/image_raw cmd_vel:=/cmd_vel

All goggles.launch.py arguments apply; the policy is configured by ``config/policy.yaml``
(``policy_params_file``) and the arguments below.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

BOOL = ('true', 'false')


def generate_launch_description() -> LaunchDescription:
    """Goggles (included) + policy node."""
    share = get_package_share_directory('vr_goggles')
    arg = LaunchConfiguration
    goggles = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'goggles.launch.py')))
    return LaunchDescription([
        DeclareLaunchArgument('policy', default_value='policy_sim',
                              description='Policy: shipped name or weights path'),
        DeclareLaunchArgument('cmd_vel', default_value='/cmd_vel',
                              description='Velocity command topic'),
        DeclareLaunchArgument('rate', default_value='10.0', description='cmd_vel rate (Hz)'),
        DeclareLaunchArgument('max_linear', default_value='0.5', description='m/s clamp'),
        DeclareLaunchArgument('max_angular', default_value='1.0', description='rad/s clamp'),
        DeclareLaunchArgument('stale_timeout', default_value='0.5',
                              description='Seconds without image_sim before zero velocity'),
        DeclareLaunchArgument('stamped', default_value='false', choices=BOOL,
                              description='Publish TwistStamped instead of Twist'),
        DeclareLaunchArgument('policy_params_file',
                              default_value=os.path.join(share, 'config', 'policy.yaml'),
                              description='YAML with the policy_node parameters'),
        # Re-declared here (same defaults as goggles.launch.py) so that they are listed by
        # `ros2 launch vr_goggles navigation.launch.py --show-args` and shared by both nodes.
        DeclareLaunchArgument('use_sim_time', default_value='false', choices=BOOL,
                              description='Use /clock'),
        DeclareLaunchArgument('image_sim', default_value='/image_sim',
                              description='The goggled image topic between the two nodes '
                              '(image_pipeline style: image_sim:=/camera/image_sim)'),
        DeclareLaunchArgument('namespace', default_value='', description='Node namespace'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level'),
        goggles,
        Node(
            package='vr_goggles', executable='policy_node', name='policy_node',
            namespace=arg('namespace'), output='screen',
            parameters=[arg('policy_params_file'), {
                'model': arg('policy'),
                'rate': ParameterValue(arg('rate'), value_type=float),
                'max_linear': ParameterValue(arg('max_linear'), value_type=float),
                'max_angular': ParameterValue(arg('max_angular'), value_type=float),
                'stale_timeout': ParameterValue(arg('stale_timeout'), value_type=float),
                'stamped': ParameterValue(arg('stamped'), value_type=bool),
                'use_sim_time': ParameterValue(arg('use_sim_time'), value_type=bool),
            }],
            remappings=[('cmd_vel', arg('cmd_vel')), ('image_sim', arg('image_sim'))],
            arguments=['--ros-args', '--log-level', arg('log_level')],
        ),
    ])
