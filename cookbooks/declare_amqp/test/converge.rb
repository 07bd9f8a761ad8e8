# frozen_string_literal: true

# Converges recipes of this cookbook under the Chef DSL stub and prints, as
# JSON, what the run produced: the files it manages (path, content, mode,
# owner), the commands it ran (argv and the names of their environment
# variables), what converged, the log, and the error if the run failed.
#
#   ruby test/converge.rb [--attributes FILE.json] [--whyrun] [--execute] RECIPE...
#
# --attributes  role-like attributes (JSON) over the cookbook's defaults
# --execute     write the files and run declare-amqp for real (shell_out);
#               otherwise nothing is written and every command answers exit 0
# The broker password, if any, comes from the environment variable
# DECLARE_AMQP_PASSWORD (into node.run_state), never from the command line.
require 'json'
require 'optparse'
require_relative 'chef_stub'

options = { attributes: {}, whyrun: false, execute: false }
OptionParser.new do |parser|
  parser.on('--attributes FILE') { |file| options[:attributes] = JSON.parse(File.read(file)) }
  parser.on('--whyrun') { options[:whyrun] = true }
  parser.on('--execute') { options[:execute] = true }
end.parse!(ARGV)
abort 'usage: converge.rb [--attributes FILE.json] [--whyrun] [--execute] RECIPE...' if ARGV.empty?

run = ChefStub::Run.new([File.expand_path('..', __dir__)],
                        attributes: options[:attributes], whyrun: options[:whyrun],
                        execute: options[:execute], write_files: options[:execute])
run.node.run_state['declare_amqp_password'] = ENV['DECLARE_AMQP_PASSWORD'] if ENV['DECLARE_AMQP_PASSWORD']
# Users' passwords as JSON {name: password}, like a data bag item's user_passwords.
if ENV['DECLARE_AMQP_USER_PASSWORDS']
  run.node.run_state['declare_amqp_user_passwords'] = JSON.parse(ENV['DECLARE_AMQP_USER_PASSWORDS'])
end
error = nil
begin
  run.converge_recipes(*ARGV)
rescue DeclareAmqp::Error, ArgumentError, ChefStub::ValidationFailed => e
  error = "#{e.class}: #{e.message}"
end

report = {
  files: run.find(:file).map do |file|
    { path: file.name, content: file.props[:content], mode: file.props[:mode], owner: file.props[:owner],
      group: file.props[:group], sensitive: file.props[:sensitive] == true }
  end,
  commands: run.commands.map { |c| { argv: c[:argv], env: c[:env].keys.sort } },
  converged: run.converged.map { |c| c[:description] },
  log: run.log,
  error: error,
}
puts JSON.pretty_generate(report)
exit(error ? 1 : 0)
