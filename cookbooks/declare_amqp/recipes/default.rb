#
# Recipe:: declare_amqp::default
#
# Installs declare-amqp into its own virtual environment at the version the
# attributes pin, and links the command onto the PATH.
#
attrs = node['declare_amqp']
venv = attrs['venv_dir']
version = attrs['version']
requirement = DeclareAmqp::Helpers.pip_requirement(version, attrs['source'])

package attrs['python_packages']

execute "create the declare-amqp virtualenv #{venv}" do
  command [attrs['python'], '-m', 'venv', venv]
  creates ::File.join(venv, 'bin', 'python')
end

pip_install = [::File.join(venv, 'bin', 'pip'), 'install', '--quiet', '--disable-pip-version-check']
pip_install += ['--index-url', attrs['pip_index_url']] if attrs['pip_index_url']
pip_install << requirement

execute "install #{requirement} into #{venv}" do
  command pip_install
  not_if { DeclareAmqp::Helpers.installed?(venv, version) }
end

link attrs['bin_link'] do
  to ::File.join(venv, 'bin', 'declare-amqp')
end
