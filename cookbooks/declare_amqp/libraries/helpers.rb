# frozen_string_literal: true

require 'uri'
require 'yaml'

# Plain-Ruby helpers behind the declare_amqp cookbook. Nothing here knows the
# topology format: the cookbook only renders a Hash to YAML and builds the
# command line and environment for declare-amqp, which does all the checking.
# No Chef API is used, so the minitest harness loads this file unchanged.
module DeclareAmqp
  # Raised when declare-amqp reports an error or a conflict; fails the Chef run.
  class Error < StandardError; end

  module Helpers
    module_function

    # A version pin for pip: digits, letters, dots, plus and dashes (PEP 440).
    VERSION_PATTERN = /\A[0-9A-Za-z.+!-]+\z/.freeze

    # Deep copy of +value+ made of plain Hash (String keys), Array, String,
    # Integer, Float, true, false and nil.
    #
    # Node attributes are Chef::Node::ImmutableMash / ImmutableArray, whose
    # +to_yaml+ would carry Ruby-specific tags (!ruby/hash:Mash) that no other
    # YAML reader understands; symbols would become ":name" strings.
    def plain(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), out| out[k.to_s] = plain(v) }
      when Array then value.map { |v| plain(v) }
      when Symbol then value.to_s
      when String then String.new(value)
      when Integer, Float, true, false, nil then value
      else raise ArgumentError, "cannot put a #{value.class} into a topology file: #{value.inspect}"
      end
    end

    # The topology file for +topology+ (a Hash in the declare-amqp YAML format).
    # A non-nil +vhost+ becomes the file's default vhost, replacing any in the Hash.
    def render_topology(topology, vhost: nil, origin: nil)
      data = plain(topology)
      data = { 'vhost' => vhost }.merge(data.reject { |key, _| key == 'vhost' }) if vhost
      header = "# Written by Chef#{origin ? " (#{origin})" : ''}; local changes are overwritten.\n"
      header + YAML.dump(data)
    end

    # The argv of one declare-amqp run. Never contains a credential: URLs and
    # the user and password travel in the environment (see +environment+).
    def command(binary, subcommand, file, prune: false)
      argv = [binary, subcommand.to_s, file]
      argv << '--detailed-exitcode' if subcommand.to_s == 'plan'
      argv << '--prune' if prune
      argv
    end

    # The environment of a declare-amqp run: connection URLs (which carry no
    # credentials) and the credentials, which must never be on a command line.
    def environment(amqp_url: nil, management_url: nil, user: nil, password: nil)
      {
        'AMQP_URL' => amqp_url,
        'RABBITMQ_MANAGEMENT_URL' => management_url,
        'AMQP_USER' => user,
        'AMQP_PASS' => password,
      }.compact
    end

    # The users of a topology with every literal +password+ replaced by a
    # reference to an environment variable, and that environment: the password
    # reaches declare-amqp only through the environment of its process, never
    # the topology file, a command line or a log. +password_file+,
    # +password_env+ and +password_hash+ pass through unchanged.
    def user_entries(users)
      env = {}
      entries = plain(users || []).each_with_index.map do |user, index|
        raise ArgumentError, "each user must be a Hash, got #{user.class}" unless user.is_a?(Hash)

        password = user.delete('password')
        next user if password.nil?

        variable = "DECLARE_AMQP_USER_PASSWORD_#{index}"
        env[variable] = password.to_s
        user.merge('password_env' => variable)
      end
      [entries, env]
    end

    # True when +uris+ maps environment variable names to URIs (the names a
    # topology's uri_env, src_uri_env and dest_uri_env give).
    def uri_variables?(uris)
      uris.all? { |name, uri| name.to_s.match?(/\A[A-Z_][A-Z0-9_]*\z/) && uri.is_a?(String) }
    end

    # What to scrub from output for these URIs: each URI, and its password
    # (percent-decoded too), which a broker error may echo on its own.
    def uri_secrets(uris)
      uris.flat_map do |uri|
        password = begin
          URI.parse(uri.to_s).password
        rescue URI::InvalidURIError
          nil
        end
        [uri.to_s, password, password && URI.decode_www_form_component(password)]
      end.compact
    end

    # True when +url+ carries no user or password: those belong in the
    # sensitive user/password properties, not in a URL that Chef prints.
    def url_without_credentials?(url)
      URI.parse(url).userinfo.nil?
    rescue URI::InvalidURIError
      false
    end

    # +text+ with every non-empty secret replaced, as a last line of defence
    # before the tool's output reaches a Chef log or exception message.
    def redact(text, secrets)
      secrets.compact.reject(&:empty?).uniq.sort_by { |s| -s.length }
             .reduce(text.to_s) { |out, secret| out.gsub(secret, '********') }
    end

    # What pip installs: the package at +version+ from the index, or +source+
    # (a local path or URL of a checkout, sdist or wheel) when one is given.
    def pip_requirement(version, source = nil)
      return source if source && !source.to_s.empty?
      unless version.to_s.match?(VERSION_PATTERN)
        raise ArgumentError, "declare_amqp version must be a pip version, got #{version.inspect}"
      end

      "declare-amqp==#{version}"
    end

    # True when the virtual environment at +venv+ holds declare-amqp +version+.
    def installed?(venv, version)
      !Dir.glob(File.join(venv, 'lib', 'python3*', 'site-packages',
                          "declare_amqp-#{version}.dist-info")).empty?
    end
  end
end
